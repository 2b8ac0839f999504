// @ts-check
/**
 * Paints a mask over an image on a canvas of the image's own size: brush and eraser, with a mouse, a
 * pen or a finger (pointer events, so touch works without separate handlers), or the keyboard (arrow
 * keys move the brush, Space paints). The mask sent to the API is white where painted (repaint) and
 * black elsewhere (keep), Stability's MASK_IMAGE_WHITE.
 */

const PAINT = 'rgba(255, 0, 200, 1)';

export class MaskPainter {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
    this.tool = 'brush';
    this.size = 16;
    this.painting = false;
    /** @type {{ x: number, y: number } | undefined} */
    this.last = undefined;
    this.cursor = { x: 0, y: 0 };
    this.painted = false;
    canvas.tabIndex = 0;
    canvas.addEventListener('pointerdown', (e) => {
      canvas.setPointerCapture(e.pointerId);
      this.painting = true;
      this.last = undefined;
      this.stroke(this.at(e));
      e.preventDefault();
    });
    canvas.addEventListener('pointermove', (e) => {
      if (this.painting) this.stroke(this.at(e));
    });
    const end = () => {
      this.painting = false;
      this.last = undefined;
    };
    canvas.addEventListener('pointerup', end);
    canvas.addEventListener('pointercancel', end);
    canvas.addEventListener('keydown', (e) => {
      const step = Math.max(1, Math.round(this.size / 2));
      const moves = /** @type {Record<string, [number, number]>} */ ({ ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] });
      if (moves[e.key]) {
        this.cursor = { x: clamp(this.cursor.x + moves[e.key][0], 0, canvas.width), y: clamp(this.cursor.y + moves[e.key][1], 0, canvas.height) };
        e.preventDefault();
      } else if (e.key === ' ') {
        this.last = undefined;
        this.stroke(this.cursor);
        e.preventDefault();
      }
    });
  }

  /** Sizes the canvas to the image and clears it. @param {number} width @param {number} height */
  reset(width, height) {
    this.canvas.width = width;
    this.canvas.height = height;
    this.cursor = { x: width / 2, y: height / 2 };
    this.clear();
  }

  clear() {
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.painted = false;
  }

  /** The pointer's position in image pixels (the canvas is shown scaled). @param {PointerEvent} e */
  at(e) {
    const box = this.canvas.getBoundingClientRect();
    return { x: ((e.clientX - box.left) / box.width) * this.canvas.width, y: ((e.clientY - box.top) / box.height) * this.canvas.height };
  }

  /** @param {{ x: number, y: number }} point */
  stroke(point) {
    const { ctx } = this;
    ctx.globalCompositeOperation = this.tool === 'eraser' ? 'destination-out' : 'source-over';
    ctx.strokeStyle = PAINT;
    ctx.fillStyle = PAINT;
    ctx.lineCap = 'round';
    ctx.lineWidth = this.size;
    const from = this.last ?? point;
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(point.x, point.y);
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(point.x, point.y, this.size / 2, 0, Math.PI * 2);
    ctx.fill();
    this.last = point;
    this.cursor = point;
    if (this.tool === 'brush') this.painted = true;
  }

  /** The mask as a PNG: white where painted, black elsewhere. @returns {Promise<Blob>} */
  toMask() {
    const { width, height } = this.canvas;
    const painted = this.ctx.getImageData(0, 0, width, height);
    const out = new ImageData(width, height);
    for (let i = 0; i < painted.data.length; i += 4) {
      const v = painted.data[i + 3] > 0 ? 255 : 0;
      out.data[i] = out.data[i + 1] = out.data[i + 2] = v;
      out.data[i + 3] = 255;
    }
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d')).putImageData(out, 0, 0);
    return new Promise((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('the mask could not be encoded'))), 'image/png'));
  }
}

/** @param {number} v @param {number} lo @param {number} hi */
function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}
