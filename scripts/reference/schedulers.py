#!/usr/bin/env python3
"""Reference trajectories for packages/pipeline/src/schedulers, re-derived in numpy from diffusers 0.3x-0.40.

torch and diffusers cannot be installed where sdq is developed, so this script restates the maths of
diffusers' PNDMScheduler, DDIMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler,
DPMSolverMultistepScheduler, LCMScheduler, DDPMScheduler, HeunDiscreteScheduler,
KDPM2DiscreteScheduler, LMSDiscreteScheduler, KDPM2AncestralDiscreteScheduler, DPMSolverSinglestepScheduler
(orders 1-2), DPMSolverSDEScheduler and FlowMatchEulerDiscreteScheduler (src/diffusers/schedulers/scheduling_*.py) on its own,
keeping the places where diffusers holds float32 tensors (betas, alphas_cumprod, sigma tables,
timesteps) in float32, and writes packages/pipeline/test/fixtures/schedulers.json.

Every case is driven the way a pipeline drives a scheduler:
    x = sin(0.01 i) * init_noise_sigma                     (64 elements, float32)
    for t in timesteps: out = scale_model_input(x, t) * t / (t + 1); x = step(out, t, x)
Noise (the ancestral and SDE samplers, LCM, DDPM, add_noise) comes from a shared deterministic "rng": randn(n) returns
cos(0.37 k) for a global counter k = 0, 1, 2, ... that runs over the whole case.

Run: python3 scripts/reference/schedulers.py   (numpy only)
"""

import json
import math
from pathlib import Path

import numpy as np

F32 = np.float32
OUT = Path(__file__).resolve().parents[2] / "packages/pipeline/test/fixtures/schedulers.json"
N_ELEMENTS = 64


# ---------------------------------------------------------------------------------------------
# numpy/torch behaviours that the schedulers inherit


def torch_linspace_f32(start, end, steps):
    """torch.linspace(start, end, steps, dtype=float32) on CPU: float32 step, filled from both ends."""
    start, end = F32(start), F32(end)
    if steps == 1:
        return np.array([start], dtype=F32)
    step = F32((end - start) / F32(steps - 1))
    half = steps // 2
    out = np.empty(steps, dtype=F32)
    for i in range(steps):
        out[i] = start + step * F32(i) if i < half else end - step * F32(steps - i - 1)
    return out


def cumprod_f32(values):
    """torch.cumprod on a float32 CPU tensor accumulates in double and stores float32."""
    return np.cumprod(values.astype(np.float64)).astype(F32)


class CosRng:
    """The deterministic stand-in for torch's generator that the TS tests use too."""

    def __init__(self):
        self.k = 0

    def randn(self, n):
        out = np.array([math.cos(0.37 * (self.k + i)) for i in range(n)], dtype=F32)
        self.k += n
        return out


def betas_for_alpha_bar(n, max_beta=0.999):
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)], dtype=F32)


def rescale_zero_terminal_snr(betas):
    alphas_bar_sqrt = np.sqrt(cumprod_f32((F32(1) - betas).astype(F32)))
    first, last = alphas_bar_sqrt[0], alphas_bar_sqrt[-1]
    alphas_bar_sqrt = (alphas_bar_sqrt - last).astype(F32)
    alphas_bar_sqrt = (alphas_bar_sqrt * F32(first / (first - last))).astype(F32)
    alphas_bar = (alphas_bar_sqrt * alphas_bar_sqrt).astype(F32)
    alphas = np.concatenate([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]]).astype(F32)
    return (F32(1) - alphas).astype(F32)


def make_betas(c):
    n = c["num_train_timesteps"]
    if c.get("trained_betas") is not None:
        betas = np.array(c["trained_betas"], dtype=F32)
    elif c["beta_schedule"] == "linear":
        betas = torch_linspace_f32(c["beta_start"], c["beta_end"], n)
    elif c["beta_schedule"] == "scaled_linear":
        root = torch_linspace_f32(c["beta_start"] ** 0.5, c["beta_end"] ** 0.5, n)
        betas = (root * root).astype(F32)
    elif c["beta_schedule"] == "squaredcos_cap_v2":
        betas = betas_for_alpha_bar(n)
    else:
        raise ValueError(c["beta_schedule"])
    if c.get("rescale_betas_zero_snr"):
        betas = rescale_zero_terminal_snr(betas)
    return betas


def sigma_table(alphas_cumprod):
    """((1 - alphas_cumprod) / alphas_cumprod) ** 0.5, as torch computes it in float32."""
    one_minus = (F32(1) - alphas_cumprod).astype(F32)
    return np.sqrt((one_minus / alphas_cumprod).astype(F32)).astype(F32)


def sigma_to_t(sigma, log_sigmas):
    log_sigma = np.log(max(sigma, 1e-10))
    dists = log_sigma - log_sigmas.astype(np.float64)
    low = int(np.cumsum(dists >= 0).argmax())
    low = min(low, len(log_sigmas) - 2)
    lo, hi = float(log_sigmas[low]), float(log_sigmas[low + 1])
    w = min(max((lo - log_sigma) / (lo - hi), 0.0), 1.0)
    return (1 - w) * low + w * (low + 1)


def karras(sigma_min, sigma_max, n, rho=7.0):
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def with_defaults(defaults, config):
    c = dict(defaults)
    for k, v in config.items():
        if k in defaults and v is not None:
            c[k] = v
    return c


def spaced_timesteps(c, n):
    """The leading / trailing / linspace grids of DDIM, PNDM, Euler: descending, as floats."""
    T = c["num_train_timesteps"]
    if c["timestep_spacing"] == "linspace":
        return np.linspace(0, T - 1, n)[::-1].copy()
    if c["timestep_spacing"] == "leading":
        ratio = T // n
        return (np.arange(0, n) * ratio).round()[::-1].astype(np.float64) + c["steps_offset"]
    if c["timestep_spacing"] == "trailing":
        return np.round(np.arange(T, 0, -T / n)) - 1
    raise ValueError(c["timestep_spacing"])


# ---------------------------------------------------------------------------------------------
# the schedulers


class DDIM:
    name = "DDIMScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, clip_sample=True, set_alpha_to_one=True, steps_offset=0,
                    prediction_type="epsilon", clip_sample_range=1.0, timestep_spacing="leading",
                    rescale_betas_zero_snr=False)

    def __init__(self, config):
        self.c = with_defaults(self.defaults, config)
        self.ac = cumprod_f32((F32(1) - make_betas(self.c)).astype(F32))
        self.final_ac = 1.0 if self.c["set_alpha_to_one"] else float(self.ac[0])
        self.init_noise_sigma = 1.0

    def set_timesteps(self, n):
        self.n = n
        ts = spaced_timesteps(self.c, n)
        if self.c["timestep_spacing"] == "linspace":
            ts = ts.round()
        self.timesteps = ts.astype(np.int64)

    def set_begin_index(self, i):
        pass

    def scale_model_input(self, x, t):
        return x

    def step(self, out, t, x, rng):
        t = int(t)
        prev = t - self.c["num_train_timesteps"] // self.n
        a_t = float(self.ac[t])
        a_prev = float(self.ac[prev]) if prev >= 0 else self.final_ac
        b_t = 1 - a_t
        x, out = x.astype(np.float64), out.astype(np.float64)
        p = self.c["prediction_type"]
        if p == "epsilon":
            x0, eps = (x - b_t ** 0.5 * out) / a_t ** 0.5, out
        elif p == "sample":
            x0 = out
            eps = (x - a_t ** 0.5 * x0) / b_t ** 0.5
        elif p == "v_prediction":
            x0 = a_t ** 0.5 * x - b_t ** 0.5 * out
            eps = a_t ** 0.5 * out + b_t ** 0.5 * x
        if self.c["clip_sample"]:
            r = self.c["clip_sample_range"]
            x0 = np.clip(x0, -r, r)
        # eta = 0: no variance term
        return a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps

    def add_noise(self, x0, noise, t):
        a = float(self.ac[int(t)])
        return a ** 0.5 * x0.astype(np.float64) + (1 - a) ** 0.5 * noise.astype(np.float64)


class PNDM:
    name = "PNDMScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, skip_prk_steps=False, set_alpha_to_one=False,
                    prediction_type="epsilon", timestep_spacing="leading", steps_offset=0)

    def __init__(self, config):
        self.c = with_defaults(self.defaults, config)
        # PNDM has no rescale_betas_zero_snr option in diffusers
        self.c.pop("rescale_betas_zero_snr", None)
        self.ac = cumprod_f32((F32(1) - make_betas(self.c)).astype(F32))
        self.final_ac = 1.0 if self.c["set_alpha_to_one"] else float(self.ac[0])
        self.init_noise_sigma = 1.0

    def set_timesteps(self, n):
        self.n = n
        T = self.c["num_train_timesteps"]
        asc = spaced_timesteps(self.c, n)[::-1]
        if self.c["timestep_spacing"] == "linspace":
            asc = asc.round()
        asc = asc.astype(np.int64)
        if self.c["skip_prk_steps"]:
            self.prk = np.array([], dtype=np.int64)
            self.plms = np.concatenate([asc[:-1], asc[-2:-1], asc[-1:]])[::-1].copy()
        else:
            tail = np.array(asc[-4:]).repeat(2) + np.tile(np.array([0, T // n // 2]), 4)
            self.prk = tail[:-1].repeat(2)[1:-1][::-1].copy()
            self.plms = asc[:-3][::-1].copy()
        self.timesteps = np.concatenate([self.prk, self.plms]).astype(np.int64)
        self.ets, self.counter, self.cur_out, self.cur_sample = [], 0, 0.0, None

    def set_begin_index(self, i):
        pass

    def scale_model_input(self, x, t):
        return x

    def step(self, out, t, x, rng):
        out, x = out.astype(np.float64), x.astype(np.float64)
        if self.counter < len(self.prk) and not self.c["skip_prk_steps"]:
            return self.step_prk(out, int(t), x)
        return self.step_plms(out, int(t), x)

    def step_prk(self, out, t, x):
        half = self.c["num_train_timesteps"] // self.n // 2
        prev = t - (0 if self.counter % 2 else half)
        t = int(self.prk[self.counter // 4 * 4])
        phase = self.counter % 4
        if phase == 0:
            self.cur_out = self.cur_out + out / 6
            self.ets.append(out)
            self.cur_sample = x
        elif phase in (1, 2):
            self.cur_out = self.cur_out + out / 3
        else:
            out = self.cur_out + out / 6
            self.cur_out = 0.0
        base = self.cur_sample if self.cur_sample is not None else x
        self.counter += 1
        return self.prev_sample(base, t, prev, out)

    def step_plms(self, out, t, x):
        prev = t - self.c["num_train_timesteps"] // self.n
        if self.counter != 1:
            self.ets = self.ets[-3:]
            self.ets.append(out)
        else:
            prev = t
            t = t + self.c["num_train_timesteps"] // self.n
        e = self.ets
        if len(e) == 1 and self.counter == 0:
            self.cur_sample = x
        elif len(e) == 1 and self.counter == 1:
            out = (out + e[-1]) / 2
            x = self.cur_sample
            self.cur_sample = None
        elif len(e) == 2:
            out = (3 * e[-1] - e[-2]) / 2
        elif len(e) == 3:
            out = (23 * e[-1] - 16 * e[-2] + 5 * e[-3]) / 12
        else:
            out = (55 * e[-1] - 59 * e[-2] + 37 * e[-3] - 9 * e[-4]) / 24
        self.counter += 1
        return self.prev_sample(x, t, prev, out)

    def prev_sample(self, x, t, prev, out):
        a_t = float(self.ac[t])
        a_prev = float(self.ac[prev]) if prev >= 0 else self.final_ac
        b_t, b_prev = 1 - a_t, 1 - a_prev
        if self.c["prediction_type"] == "v_prediction":
            out = a_t ** 0.5 * out + b_t ** 0.5 * x
        denom = a_t * b_prev ** 0.5 + (a_t * b_t * a_prev) ** 0.5
        return (a_prev / a_t) ** 0.5 * x - (a_prev - a_t) * out / denom

    def add_noise(self, x0, noise, t):
        a = float(self.ac[int(t)])
        return a ** 0.5 * x0.astype(np.float64) + (1 - a) ** 0.5 * noise.astype(np.float64)


class SigmaStepper:
    """Step-index bookkeeping shared by Euler, Euler a and DPM-Solver (diffusers repeats it in each)."""

    def set_begin_index(self, i):
        self.begin = i

    def index_for(self, t):
        hits = [i for i, v in enumerate(self.timesteps) if v == t]
        if not hits:
            if self.name == "DPMSolverMultistepScheduler":
                return len(self.timesteps) - 1
            raise ValueError(t)
        return hits[1] if len(hits) > 1 else hits[0]

    def init_step_index(self, t):
        if self.step_index is None:
            self.step_index = self.index_for(t) if self.begin is None else self.begin

    def noise_index(self, t):
        if self.begin is None:
            return self.index_for(t)
        return self.step_index if self.step_index is not None else self.begin


class Euler(SigmaStepper):
    name = "EulerDiscreteScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, prediction_type="epsilon", interpolation_type="linear",
                    use_karras_sigmas=False, sigma_min=None, sigma_max=None, timestep_spacing="linspace",
                    timestep_type="discrete", steps_offset=0, rescale_betas_zero_snr=False,
                    final_sigmas_type="zero")

    def __init__(self, config):
        self.c = with_defaults(self.defaults, config)
        self.ac = cumprod_f32((F32(1) - make_betas(self.c)).astype(F32))
        if self.c["rescale_betas_zero_snr"]:
            self.ac[-1] = F32(2.0 ** -24)
        table = sigma_table(self.ac)
        self.sigmas = np.concatenate([table[::-1], [0]]).astype(F32)
        self.step_index = self.begin = None

    @property
    def init_noise_sigma(self):
        m = float(self.sigmas.max())
        return m if self.c["timestep_spacing"] in ("linspace", "trailing") else (m * m + 1) ** 0.5

    def set_timesteps(self, n):
        c = self.c
        ts = spaced_timesteps(c, n).astype(F32)
        table = sigma_table(self.ac)
        log_table = np.log(table)
        if c["interpolation_type"] == "linear":
            sig = np.interp(ts.astype(np.float64), np.arange(len(table)), table.astype(np.float64))
        else:  # log_linear
            sig = np.exp(torch_linspace_f32(log_table[-1], log_table[0], n + 1)).astype(F32)
        if c["use_karras_sigmas"]:
            lo = c["sigma_min"] if c["sigma_min"] is not None else float(sig[-1])
            hi = c["sigma_max"] if c["sigma_max"] is not None else float(sig[0])
            sig = karras(lo, hi, n)
            ts = np.array([sigma_to_t(float(s), log_table) for s in sig])
        last = float(table[0]) if c["final_sigmas_type"] == "sigma_min" else 0.0
        self.sigmas = np.concatenate([np.asarray(sig, dtype=np.float64), [last]]).astype(F32)
        if c["timestep_type"] == "continuous" and c["prediction_type"] == "v_prediction":
            self.timesteps = (F32(0.25) * np.log(self.sigmas[:-1])).astype(F32)
        else:
            self.timesteps = np.asarray(ts).astype(F32)
        self.step_index = self.begin = None

    def scale_model_input(self, x, t):
        self.init_step_index(t)
        s = float(self.sigmas[self.step_index])
        return x.astype(np.float64) / (s * s + 1) ** 0.5

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        s = float(self.sigmas[self.step_index])
        x, out = x.astype(np.float64), out.astype(np.float64)
        p = self.c["prediction_type"]
        if p in ("sample", "original_sample"):
            x0 = out
        elif p == "epsilon":
            x0 = x - s * out
        elif p == "v_prediction":
            x0 = out * (-s / (s * s + 1) ** 0.5) + x / (s * s + 1)
        d = (x - x0) / s
        dt = float(self.sigmas[self.step_index + 1]) - s
        self.step_index += 1
        return x + d * dt

    def add_noise(self, x0, noise, t):
        s = float(self.sigmas[self.noise_index(t)])
        return x0.astype(np.float64) + noise.astype(np.float64) * s


class EulerAncestral(SigmaStepper):
    name = "EulerAncestralDiscreteScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, prediction_type="epsilon", timestep_spacing="linspace", steps_offset=0,
                    rescale_betas_zero_snr=False)

    def __init__(self, config):
        self.c = with_defaults(self.defaults, config)
        self.ac = cumprod_f32((F32(1) - make_betas(self.c)).astype(F32))
        if self.c["rescale_betas_zero_snr"]:
            self.ac[-1] = F32(2.0 ** -24)
        self.sigmas = np.concatenate([sigma_table(self.ac)[::-1], [0]]).astype(F32)
        self.step_index = self.begin = None

    @property
    def init_noise_sigma(self):
        m = float(self.sigmas.max())
        return m if self.c["timestep_spacing"] in ("linspace", "trailing") else (m * m + 1) ** 0.5

    def set_timesteps(self, n):
        ts = spaced_timesteps(self.c, n).astype(F32)
        table = sigma_table(self.ac)
        sig = np.interp(ts.astype(np.float64), np.arange(len(table)), table.astype(np.float64))
        self.sigmas = np.concatenate([sig, [0.0]]).astype(F32)
        self.timesteps = ts
        self.step_index = self.begin = None

    def scale_model_input(self, x, t):
        self.init_step_index(t)
        s = float(self.sigmas[self.step_index])
        return x.astype(np.float64) / (s * s + 1) ** 0.5

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        s = float(self.sigmas[self.step_index])
        x, out = x.astype(np.float64), out.astype(np.float64)
        if self.c["prediction_type"] == "epsilon":
            x0 = x - s * out
        else:  # v_prediction
            x0 = out * (-s / (s * s + 1) ** 0.5) + x / (s * s + 1)
        s_to = float(self.sigmas[self.step_index + 1])
        up = (s_to ** 2 * (s ** 2 - s_to ** 2) / s ** 2) ** 0.5
        down = (s_to ** 2 - up ** 2) ** 0.5
        prev = x + (x - x0) / s * (down - s)
        prev = prev + rng.randn(len(x)).astype(np.float64) * up
        self.step_index += 1
        return prev

    def add_noise(self, x0, noise, t):
        s = float(self.sigmas[self.noise_index(t)])
        return x0.astype(np.float64) + noise.astype(np.float64) * s


class DPMSolver(SigmaStepper):
    name = "DPMSolverMultistepScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, solver_order=2, prediction_type="epsilon", algorithm_type="dpmsolver++",
                    solver_type="midpoint", lower_order_final=True, euler_at_final=False,
                    use_karras_sigmas=False, final_sigmas_type="zero", lambda_min_clipped=-math.inf,
                    # not DPMSolver's own options, but diffusers keeps them in its config when the
                    # scheduler_config.json has them, and _convert_to_karras reads them from there
                    sigma_min=None, sigma_max=None,
                    timestep_spacing="linspace", steps_offset=0, rescale_betas_zero_snr=False)

    def __init__(self, config):
        self.c = with_defaults(self.defaults, config)
        self.ac = cumprod_f32((F32(1) - make_betas(self.c)).astype(F32))
        if self.c["rescale_betas_zero_snr"]:
            self.ac[-1] = F32(2.0 ** -24)
        alpha_t = np.sqrt(self.ac).astype(F32)
        sigma_t = np.sqrt((F32(1) - self.ac).astype(F32)).astype(F32)
        self.lambda_t = (np.log(alpha_t) - np.log(sigma_t)).astype(F32)
        self.init_noise_sigma = 1.0
        self.step_index = self.begin = None

    def set_timesteps(self, n):
        c = self.c
        T = c["num_train_timesteps"]
        clipped = int(np.searchsorted(self.lambda_t[::-1], c["lambda_min_clipped"], side="left"))
        last = T - clipped
        if c["timestep_spacing"] == "linspace":
            ts = np.linspace(0, last - 1, n + 1).round()[::-1][:-1].astype(np.int64)
        elif c["timestep_spacing"] == "leading":
            ratio = last // (n + 1)
            ts = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].astype(np.int64) + c["steps_offset"]
        else:  # trailing
            ts = np.arange(last, 0, -T / n).round().astype(np.int64) - 1
        table = sigma_table(self.ac)
        log_table = np.log(table)
        if c["use_karras_sigmas"]:
            desc = table[::-1]
            lo = c["sigma_min"] if c["sigma_min"] is not None else float(desc[-1])
            hi = c["sigma_max"] if c["sigma_max"] is not None else float(desc[0])
            sig = karras(lo, hi, n)
            ts = np.array([sigma_to_t(float(s), log_table) for s in sig])
            if c["beta_schedule"] != "squaredcos_cap_v2":
                ts = ts.round()
        else:
            sig = np.interp(ts.astype(np.float64), np.arange(len(table)), table.astype(np.float64))
        if c["final_sigmas_type"] == "sigma_min":
            last_sigma = float(table[0])
        else:
            last_sigma = 0.0
        self.sigmas = np.concatenate([sig, [last_sigma]]).astype(F32)
        self.timesteps = np.asarray(ts).astype(np.int64)
        self.n = len(self.timesteps)
        self.outputs = [None] * c["solver_order"]
        self.lower_order_nums = 0
        self.step_index = self.begin = None

    def scale_model_input(self, x, t):
        return x

    @staticmethod
    def alpha_sigma(s):
        a = 1 / (s * s + 1) ** 0.5
        return a, s * a

    def lam(self, i):
        a, s = self.alpha_sigma(float(self.sigmas[i]))
        with np.errstate(divide="ignore"):
            return a, s, np.log(a) - np.log(s)

    def convert(self, out, x):
        a, s = self.alpha_sigma(float(self.sigmas[self.step_index]))
        p = self.c["prediction_type"]
        if self.c["algorithm_type"] == "dpmsolver++":
            if p == "epsilon":
                return (x - s * out) / a
            if p == "sample":
                return out
            return a * x - s * out  # v_prediction
        if p == "epsilon":
            return out
        if p == "sample":
            return (x - a * out) / s
        return a * out + s * x

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        c, i = self.c, self.step_index
        n = len(self.timesteps)
        lof = i == n - 1 and (c["euler_at_final"] or (c["lower_order_final"] and n < 15)
                              or c["final_sigmas_type"] == "zero")
        los = i == n - 2 and c["lower_order_final"] and n < 15
        x, out = x.astype(np.float64), out.astype(np.float64)
        m = self.convert(out, x)
        self.outputs = self.outputs[1:] + [m]
        order = c["solver_order"]
        if order == 1 or self.lower_order_nums < 1 or lof:
            prev = self.first_order(m, x)
        elif order == 2 or self.lower_order_nums < 2 or los:
            prev = self.second_order(x)
        else:
            prev = self.third_order(x)
        if self.lower_order_nums < order:
            self.lower_order_nums += 1
        self.step_index += 1
        return prev

    def first_order(self, m, x):
        i = self.step_index
        a_t, s_t, l_t = self.lam(i + 1)
        a_s, s_s, l_s = self.lam(i)
        h = l_t - l_s
        if self.c["algorithm_type"] == "dpmsolver++":
            return (s_t / s_s) * x - (a_t * (np.exp(-h) - 1.0)) * m
        return (a_t / a_s) * x - (s_t * (np.exp(h) - 1.0)) * m

    def second_order(self, x):
        i = self.step_index
        a_t, s_t, l_t = self.lam(i + 1)
        a_0, s_0, l_0 = self.lam(i)
        _, _, l_1 = self.lam(i - 1)
        m0, m1 = self.outputs[-1], self.outputs[-2]
        h, h0 = l_t - l_0, l_0 - l_1
        r0 = h0 / h
        D0, D1 = m0, (1.0 / r0) * (m0 - m1)
        if self.c["algorithm_type"] == "dpmsolver++":
            if self.c["solver_type"] == "midpoint":
                return (s_t / s_0) * x - (a_t * (np.exp(-h) - 1.0)) * D0 - 0.5 * (a_t * (np.exp(-h) - 1.0)) * D1
            return (s_t / s_0) * x - (a_t * (np.exp(-h) - 1.0)) * D0 + (a_t * ((np.exp(-h) - 1.0) / h + 1.0)) * D1
        if self.c["solver_type"] == "midpoint":
            return (a_t / a_0) * x - (s_t * (np.exp(h) - 1.0)) * D0 - 0.5 * (s_t * (np.exp(h) - 1.0)) * D1
        return (a_t / a_0) * x - (s_t * (np.exp(h) - 1.0)) * D0 - (s_t * ((np.exp(h) - 1.0) / h - 1.0)) * D1

    def third_order(self, x):
        i = self.step_index
        a_t, s_t, l_t = self.lam(i + 1)
        a_0, s_0, l_0 = self.lam(i)
        _, _, l_1 = self.lam(i - 1)
        _, _, l_2 = self.lam(i - 2)
        m0, m1, m2 = self.outputs[-1], self.outputs[-2], self.outputs[-3]
        h, h0, h1 = l_t - l_0, l_0 - l_1, l_1 - l_2
        r0, r1 = h0 / h, h1 / h
        D1_0, D1_1 = (1.0 / r0) * (m0 - m1), (1.0 / r1) * (m1 - m2)
        D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1)
        D2 = (1.0 / (r0 + r1)) * (D1_0 - D1_1)
        if self.c["algorithm_type"] == "dpmsolver++":
            return ((s_t / s_0) * x - (a_t * (np.exp(-h) - 1.0)) * m0
                    + (a_t * ((np.exp(-h) - 1.0) / h + 1.0)) * D1
                    - (a_t * ((np.exp(-h) - 1.0 + h) / h ** 2 - 0.5)) * D2)
        return ((a_t / a_0) * x - (s_t * (np.exp(h) - 1.0)) * m0
                - (s_t * ((np.exp(h) - 1.0) / h - 1.0)) * D1
                - (s_t * ((np.exp(h) - 1.0 - h) / h ** 2 - 0.5)) * D2)

    def add_noise(self, x0, noise, t):
        a, s = self.alpha_sigma(float(self.sigmas[self.noise_index(t)]))
        return a * x0.astype(np.float64) + s * noise.astype(np.float64)


class LCM(SigmaStepper):
    name = "LCMScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    trained_betas=None, original_inference_steps=50, clip_sample=False, clip_sample_range=1.0,
                    set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon", timestep_spacing="leading",
                    timestep_scaling=10.0, rescale_betas_zero_snr=False)

    def __init__(self, config):
        self.c = with_defaults(self.defaults, config)
        self.ac = cumprod_f32((F32(1) - make_betas(self.c)).astype(F32))
        self.final_ac = 1.0 if self.c["set_alpha_to_one"] else float(self.ac[0])
        self.init_noise_sigma = 1.0
        self.step_index = self.begin = None

    def set_timesteps(self, n):
        c = self.c
        orig = c["original_inference_steps"]
        k = c["num_train_timesteps"] // orig
        origin = (np.arange(1, orig + 1) * k - 1)[::-1]
        idx = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
        self.timesteps = origin[idx].astype(np.int64)
        self.n = n
        self.step_index = self.begin = None

    def scale_model_input(self, x, t):
        return x

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        t = int(t)
        j = self.step_index + 1
        prev = int(self.timesteps[j]) if j < len(self.timesteps) else t
        a_t = float(self.ac[t])
        a_prev = float(self.ac[prev]) if prev >= 0 else self.final_ac
        b_t, b_prev = 1 - a_t, 1 - a_prev
        scaled = t * self.c["timestep_scaling"]
        c_skip = 0.25 / (scaled ** 2 + 0.25)
        c_out = scaled / (scaled ** 2 + 0.25) ** 0.5
        x, out = x.astype(np.float64), out.astype(np.float64)
        p = self.c["prediction_type"]
        if p == "epsilon":
            x0 = (x - b_t ** 0.5 * out) / a_t ** 0.5
        elif p == "sample":
            x0 = out
        else:
            x0 = a_t ** 0.5 * x - b_t ** 0.5 * out
        if self.c["clip_sample"]:
            x0 = np.clip(x0, -self.c["clip_sample_range"], self.c["clip_sample_range"])
        denoised = c_out * x0 + c_skip * x
        if self.step_index != self.n - 1:
            prev_x = a_prev ** 0.5 * denoised + b_prev ** 0.5 * rng.randn(len(x)).astype(np.float64)
        else:
            prev_x = denoised
        self.step_index += 1
        return prev_x

    def add_noise(self, x0, noise, t):
        a = float(self.ac[int(t)])
        return a ** 0.5 * x0.astype(np.float64) + (1 - a) ** 0.5 * noise.astype(np.float64)


class KSigma(SigmaStepper):
    """What Heun, KDPM2 (and its ancestral), LMS and DPM-Solver SDE share: the config and alphas_cumprod,
    the full training schedule at construction (as diffusers' __init__ sets it), init_noise_sigma and
    add_noise in sigma terms."""

    def __init__(self, config):
        self.c = with_defaults(self.defaults, config)
        self.ac = cumprod_f32((F32(1) - make_betas(self.c)).astype(F32))
        self.set_timesteps(self.c["num_train_timesteps"])

    @property
    def init_noise_sigma(self):
        m = float(self.sigmas.max())
        return m if self.c["timestep_spacing"] in ("linspace", "trailing") else (m * m + 1) ** 0.5

    def add_noise(self, x0, noise, t):
        s = float(self.sigmas[self.noise_index(t)])
        return x0.astype(np.float64) + noise.astype(np.float64) * s


class Heun(KSigma):
    """HeunDiscreteScheduler: Heun's second-order method on the probability-flow ODE (Karras et al. 2022,
    algorithm 1 without churn); each inference step but the last is two model calls."""
    name = "HeunDiscreteScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                    trained_betas=None, prediction_type="epsilon", use_karras_sigmas=False, clip_sample=False,
                    clip_sample_range=1.0, timestep_spacing="linspace", steps_offset=0)

    def set_timesteps(self, n):
        ts = spaced_timesteps(self.c, n).astype(F32)
        table = sigma_table(self.ac)
        sig = np.interp(ts.astype(np.float64), np.arange(len(table)), table.astype(np.float64))
        sig = np.concatenate([sig, [0.0]]).astype(F32)
        # every sigma but the first and the last twice, every timestep but the first twice
        self.sigmas = np.concatenate([sig[:1], np.repeat(sig[1:-1], 2), sig[-1:]])
        self.timesteps = np.concatenate([ts[:1], np.repeat(ts[1:], 2)]).astype(F32)
        self.prev_derivative = self.dt = self.saved = None
        self.step_index = self.begin = None

    def scale_model_input(self, x, t):
        self.init_step_index(t)
        s = float(self.sigmas[self.step_index])
        return x.astype(np.float64) / (s * s + 1) ** 0.5

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        i = self.step_index
        first = self.dt is None
        if first:
            s, s_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        else:
            s, s_next = float(self.sigmas[i - 1]), float(self.sigmas[i])
        x, out = x.astype(np.float64), out.astype(np.float64)
        s_in = s if first else s_next
        p = self.c["prediction_type"]
        if p == "epsilon":
            x0 = x - s_in * out
        elif p == "v_prediction":
            x0 = out * (-s_in / (s_in * s_in + 1) ** 0.5) + x / (s_in * s_in + 1)
        else:
            x0 = out
        if self.c["clip_sample"]:
            r = self.c["clip_sample_range"]
            x0 = np.clip(x0, -r, r)
        if first:
            d = (x - x0) / s
            dt = s_next - s
            self.prev_derivative, self.dt, self.saved = d, dt, x
            base = x
        else:
            d = ((x - x0) / s_next + self.prev_derivative) / 2
            dt, base = self.dt, self.saved
            self.prev_derivative = self.dt = self.saved = None
        self.step_index += 1
        return base + d * dt


class KDPM2(KSigma):
    """KDPM2DiscreteScheduler: k-diffusion's DPM-Solver-2 (sample_dpm_2): an Euler half-step to the
    log-midpoint sigma, then the full step with the midpoint's slope; two model calls per step but the last."""
    name = "KDPM2DiscreteScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                    trained_betas=None, use_karras_sigmas=False, prediction_type="epsilon",
                    timestep_spacing="linspace", steps_offset=0)

    def set_timesteps(self, n):
        ts = spaced_timesteps(self.c, n).astype(F32)
        table = sigma_table(self.ac)
        log_table = np.log(table)
        sig = np.interp(ts.astype(np.float64), np.arange(len(table)), table.astype(np.float64))
        sig = np.concatenate([sig, [0.0]]).astype(F32)
        # the log-midpoints between each sigma and the one before it, in float32 as torch's lerp computes
        # weight 0.5: end - (end - start) * 0.5 (the ends, -inf apart from a zero sigma, are never used)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(sig).astype(F32)
            rolled = np.roll(logs, 1)
            mid = np.exp((rolled - (rolled - logs) * F32(0.5)).astype(F32)).astype(F32)
        mid = np.nan_to_num(mid, nan=0.0)
        self.sigmas = np.concatenate([sig[:1], np.repeat(sig[1:], 2)])
        self.sigmas_interpol = np.concatenate([mid[:1], np.repeat(mid[1:], 2)])
        t_mid = np.array([sigma_to_t(float(v), log_table) for v in mid]).astype(F32)
        inter = np.stack([t_mid[1:-1], ts[1:]], axis=-1).flatten()
        self.timesteps = np.concatenate([ts[:1], inter]).astype(F32)
        self.saved = None
        self.step_index = self.begin = None

    def scale_model_input(self, x, t):
        self.init_step_index(t)
        i = self.step_index
        s = float(self.sigmas[i]) if self.saved is None else float(self.sigmas_interpol[i])
        return x.astype(np.float64) / (s * s + 1) ** 0.5

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        i = self.step_index
        first = self.saved is None
        if first:
            s, s_mid, s_next = float(self.sigmas[i]), float(self.sigmas_interpol[i + 1]), float(self.sigmas[i + 1])
        else:
            s, s_mid, s_next = float(self.sigmas[i - 1]), float(self.sigmas_interpol[i]), float(self.sigmas[i])
        x, out = x.astype(np.float64), out.astype(np.float64)
        s_in = s if first else s_mid
        if self.c["prediction_type"] == "epsilon":
            x0 = x - s_in * out
        else:
            x0 = out * (-s_in / (s_in * s_in + 1) ** 0.5) + x / (s_in * s_in + 1)
        if first:
            d = (x - x0) / s
            dt = s_mid - s
            self.saved = x
            base = x
        else:
            d = (x - x0) / s_mid
            dt = s_next - s
            base = self.saved
            self.saved = None
        self.step_index += 1
        return base + d * dt


class LMS(KSigma):
    """LMSDiscreteScheduler: k-diffusion's linear multistep method (sample_lms, order 4) on the
    probability-flow ODE; each coefficient integrates a Lagrange basis polynomial over the step."""
    name = "LMSDiscreteScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, use_karras_sigmas=False, prediction_type="epsilon",
                    timestep_spacing="linspace", steps_offset=0)
    lms_order = 4

    def set_timesteps(self, n):
        ts = spaced_timesteps(self.c, n).astype(F32)
        table = sigma_table(self.ac)
        sig = np.interp(ts.astype(np.float64), np.arange(len(table)), table.astype(np.float64))
        self.sigmas = np.concatenate([sig, [0.0]]).astype(F32)
        self.timesteps = ts
        self.derivatives = []
        self.step_index = self.begin = None

    def scale_model_input(self, x, t):
        self.init_step_index(t)
        s = float(self.sigmas[self.step_index])
        return x.astype(np.float64) / (s * s + 1) ** 0.5

    def coefficient(self, order, i, current):
        # the basis polynomial of sigmas[i - current] among sigmas[i], ..., sigmas[i - order + 1],
        # integrated exactly from sigmas[i] to sigmas[i + 1] (scipy's quad in diffusers)
        sig = [float(v) for v in self.sigmas]
        poly = np.poly1d([1.0])
        for k in range(order):
            if k == current:
                continue
            poly = poly * np.poly1d([1.0, -sig[i - k]]) / (sig[i - current] - sig[i - k])
        antiderivative = poly.integ()
        return antiderivative(sig[i + 1]) - antiderivative(sig[i])

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        i = self.step_index
        s = float(self.sigmas[i])
        x, out = x.astype(np.float64), out.astype(np.float64)
        if self.c["prediction_type"] == "epsilon":
            x0 = x - s * out
        elif self.c["prediction_type"] == "v_prediction":
            x0 = out * (-s / (s * s + 1) ** 0.5) + x / (s * s + 1)
        else:
            x0 = out
        self.derivatives.append((x - x0) / s)
        if len(self.derivatives) > self.lms_order:
            self.derivatives.pop(0)
        order = min(i + 1, self.lms_order)
        coeffs = [self.coefficient(order, i, k) for k in range(order)]
        # zip stops at the shorter list: after img2img's begin index fewer derivatives than the order
        prev = x + sum(c * d for c, d in zip(coeffs, reversed(self.derivatives)))
        self.step_index += 1
        return prev


class KDPM2Ancestral(KSigma):
    """KDPM2AncestralDiscreteScheduler: k-diffusion's sample_dpm_2_ancestral. DPM-Solver-2 aimed at the
    ancestral sigma_down, then noise of sigma_up; diffusers draws noise on every call, adds it on the second."""
    name = "KDPM2AncestralDiscreteScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                    trained_betas=None, use_karras_sigmas=False, prediction_type="epsilon",
                    timestep_spacing="linspace", steps_offset=0)

    def set_timesteps(self, n):
        ts = spaced_timesteps(self.c, n).astype(F32)
        table = sigma_table(self.ac)
        log_table = np.log(table)
        sig = np.interp(ts.astype(np.float64), np.arange(len(table)), table.astype(np.float64))
        sig = np.concatenate([sig, [0.0]]).astype(F32)
        nxt = np.concatenate([sig[1:], [0.0]]).astype(F32)
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.sqrt((nxt * nxt * (sig * sig - nxt * nxt) / (sig * sig)).astype(F32)).astype(F32)
            down = np.sqrt((nxt * nxt - up * up).astype(F32)).astype(F32)
            down[-1] = 0.0
            # torch's lerp at weight 0.5 from log(sigma) to log(sigma_down): end - (end - start) * 0.5
            start, end = np.log(sig).astype(F32), np.log(down).astype(F32)
            mid = np.exp((end - (end - start) * F32(0.5)).astype(F32)).astype(F32)
        mid[-2:] = 0.0
        lay = lambda a: np.concatenate([a[:1], np.repeat(a[1:], 2), a[-1:]])
        self.sigmas, self.sigmas_interpol, self.sigmas_up, self.sigmas_down = lay(sig), lay(mid), lay(up), lay(down)
        t_mid = np.array([sigma_to_t(float(v), log_table) for v in mid]).astype(F32)
        inter = np.stack([t_mid[:-2], ts[1:]], axis=-1).flatten()
        self.timesteps = np.concatenate([ts[:1], inter]).astype(F32)
        self.saved = None
        self.step_index = self.begin = None

    def scale_model_input(self, x, t):
        self.init_step_index(t)
        i = self.step_index
        s = float(self.sigmas[i]) if self.saved is None else float(self.sigmas_interpol[i - 1])
        return x.astype(np.float64) / (s * s + 1) ** 0.5

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        i = self.step_index
        first = self.saved is None
        j = i if first else i - 1
        s, s_mid, s_up, s_down = (float(a[j]) for a in (self.sigmas, self.sigmas_interpol, self.sigmas_up, self.sigmas_down))
        if first:
            s_down = float(self.sigmas_down[i - 1])  # unused on the first half, as in diffusers
        noise = rng.randn(len(x)).astype(np.float64)
        x, out = x.astype(np.float64), out.astype(np.float64)
        s_in = s if first else s_mid
        if self.c["prediction_type"] == "epsilon":
            x0 = x - s_in * out
        else:
            x0 = out * (-s_in / (s_in * s_in + 1) ** 0.5) + x / (s_in * s_in + 1)
        self.step_index += 1
        if first:
            self.saved = x
            return x + (x - x0) / s * (s_mid - s)
        base, self.saved = self.saved, None
        return base + (x - x0) / s_mid * (s_down - s) + noise * s_up


class DPMSinglestep(SigmaStepper):
    """DPMSolverSinglestepScheduler (orders 1 and 2): DPM-Solver++ in pairs of steps, the second of each
    pair a second-order update from the pair's start; with sde-dpmsolver++ each update adds fresh noise."""
    name = "DPMSolverSinglestepScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, solver_order=2, prediction_type="epsilon", algorithm_type="dpmsolver++",
                    solver_type="midpoint", lower_order_final=False, final_sigmas_type="zero",
                    lambda_min_clipped=-math.inf)
    init_noise_sigma = 1.0

    def __init__(self, config):
        self.c = with_defaults(self.defaults, config)
        self.ac = cumprod_f32((F32(1) - make_betas(self.c)).astype(F32))
        alpha = np.sqrt(self.ac).astype(F32)
        sigma = np.sqrt((F32(1) - self.ac).astype(F32)).astype(F32)
        self.lambdas = (np.log(alpha) - np.log(sigma)).astype(F32)
        self.step_index = self.begin = None

    def order_list(self, n):
        order, lof = self.c["solver_order"], self.c["lower_order_final"]
        if order == 1:
            return [1] * n
        if lof:
            return [1, 2] * (n // 2 - 1) + [1, 1] if n % 2 == 0 else [1, 2] * (n // 2) + [1]
        return [1, 2] * (n // 2)

    def set_timesteps(self, n):
        c = self.c
        T = c["num_train_timesteps"]
        clipped = int(np.searchsorted(self.lambdas[::-1], c["lambda_min_clipped"]))
        ts = np.linspace(0, T - 1 - clipped, n + 1).round()[::-1][:-1].astype(np.int64)
        table = sigma_table(self.ac)
        sig = np.interp(ts.astype(np.float64), np.arange(len(table)), table.astype(np.float64))
        last = 0.0 if c["final_sigmas_type"] == "zero" else float(table[0])
        self.sigmas = np.concatenate([sig, [last]]).astype(F32)
        self.timesteps = ts.astype(np.float64)
        # diffusers switches lower_order_final on (and keeps it) for odd step counts and a zero final sigma
        if not c["lower_order_final"] and (n % c["solver_order"] != 0 or c["final_sigmas_type"] == "zero"):
            c["lower_order_final"] = True
        self.orders = self.order_list(n)
        self.outputs = [None] * c["solver_order"]
        self.sample = None
        self.step_index = self.begin = None

    def index_for(self, t):
        hits = [i for i, v in enumerate(self.timesteps) if v == t]
        if not hits:
            return len(self.timesteps) - 1
        return hits[1] if len(hits) > 1 else hits[0]

    @staticmethod
    def alpha_sigma(s):
        a = 1 / (s * s + 1) ** 0.5
        return a, s * a

    def lam(self, i):
        a, s = self.alpha_sigma(float(self.sigmas[i]))
        with np.errstate(divide="ignore"):
            return np.log(a) - np.log(s)

    def scale_model_input(self, x, t):
        return x

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        i = self.step_index
        x, out = x.astype(np.float64), out.astype(np.float64)
        a, s = self.alpha_sigma(float(self.sigmas[i]))
        p = self.c["prediction_type"]
        m = (x - s * out) / a if p == "epsilon" else out if p == "sample" else a * x - s * out
        self.outputs = self.outputs[1:] + [m]
        sde = self.c["algorithm_type"] == "sde-dpmsolver++"
        noise = rng.randn(len(x)).astype(np.float64) if sde else None
        order = self.orders[i]
        while self.outputs[-order] is None:
            order -= 1
        if order == 1:
            self.sample = x
        a_t, s_t = self.alpha_sigma(float(self.sigmas[i + 1]))
        lam_t = self.lam(i + 1)
        with np.errstate(over="ignore", invalid="ignore"):
            if order == 1:
                h = lam_t - self.lam(i)
                s_s = self.alpha_sigma(float(self.sigmas[i]))[1]
                if sde:
                    prev = (s_t / s_s * np.exp(-h)) * self.sample + a_t * (1 - np.exp(-2 * h)) * m \
                        + s_t * np.sqrt(1 - np.exp(-2 * h)) * noise
                else:
                    prev = (s_t / s_s) * self.sample - a_t * (np.exp(-h) - 1) * m
            else:
                m0, m1 = self.outputs[-1], self.outputs[-2]
                s_s1 = self.alpha_sigma(float(self.sigmas[i - 1]))[1]
                h, h0 = lam_t - self.lam(i - 1), self.lam(i) - self.lam(i - 1)
                D0, D1 = m1, (h / h0) * (m0 - m1)
                heun = self.c["solver_type"] == "heun"
                if sde:
                    e = 1 - np.exp(-2 * h)
                    k1 = a_t * (e / (2 * h) * -1 + 1) if heun else 0.5 * a_t * e
                    prev = (s_t / s_s1 * np.exp(-h)) * self.sample + a_t * e * D0 + k1 * D1 + s_t * np.sqrt(e) * noise
                else:
                    e = np.exp(-h) - 1
                    k1 = a_t * (e / h + 1) if heun else -0.5 * a_t * e
                    prev = (s_t / s_s1) * self.sample - a_t * e * D0 + k1 * D1
        self.step_index += 1
        return prev

    def add_noise(self, x0, noise, t):
        a, s = self.alpha_sigma(float(self.sigmas[self.noise_index(t)]))
        return a * x0.astype(np.float64) + s * noise.astype(np.float64)


class DPMSDE(KSigma):
    """DPMSolverSDEScheduler: k-diffusion's sample_dpmpp_sde (DPM-Solver++ SDE, midpoint ratio 0.5). Where
    diffusers draws torchsde Brownian-tree increments, this draws the case's rng, one draw per noisy half-step."""
    name = "DPMSolverSDEScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                    trained_betas=None, prediction_type="epsilon", use_karras_sigmas=False,
                    timestep_spacing="linspace", steps_offset=0)

    def set_timesteps(self, n):
        ts = spaced_timesteps(self.c, n).astype(np.float64)  # float64 timesteps, as diffusers keeps them here
        table = sigma_table(self.ac)
        log_table = np.log(table)
        sig = np.interp(ts, np.arange(len(table)), table.astype(np.float64))
        lt = -np.log(sig)
        proposed = np.exp(-(lt[:-1] + np.diff(lt) * 0.5))
        second = np.array([sigma_to_t(float(v), log_table) for v in proposed])
        sig32 = np.concatenate([sig, [0.0]]).astype(F32)
        self.sigmas = np.concatenate([sig32[:1], np.repeat(sig32[1:-1], 2), sig32[-1:]])
        timesteps = np.concatenate([ts[:1], np.repeat(ts[1:], 2)])
        timesteps[1::2] = second
        self.timesteps = timesteps
        self.saved = self.mid = None
        self.step_index = self.begin = None

    def scale_model_input(self, x, t):
        self.init_step_index(t)
        s = float(self.sigmas[self.step_index]) if self.saved is None else self.mid
        return x.astype(np.float64) / (s * s + 1) ** 0.5

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        i = self.step_index
        first = self.saved is None
        s, s_next = (float(self.sigmas[i]), float(self.sigmas[i + 1])) if first else (float(self.sigmas[i - 1]), float(self.sigmas[i]))
        x, out = x.astype(np.float64), out.astype(np.float64)
        t_now = -math.log(s)
        t_next = -math.log(s_next) if s_next > 0 else math.inf
        t_mid = t_now + (t_next - t_now) * 0.5
        s_in = s if first else math.exp(-t_mid)
        if self.c["prediction_type"] == "epsilon":
            x0 = x - s_in * out
        else:
            x0 = out * (-s_in / (s_in * s_in + 1) ** 0.5) + x / (s_in * s_in + 1)
        self.step_index += 1
        if s_next == 0:
            return x + (x - x0) / s * (s_next - s)
        if first:
            t_next = t_mid
        else:
            x = self.saved
        s_from, s_to = math.exp(-t_now), math.exp(-t_next)
        up = min(s_to, (s_to ** 2 * (s_from ** 2 - s_to ** 2) / s_from ** 2) ** 0.5)
        down = (s_to ** 2 - up ** 2) ** 0.5
        t_anc = -math.log(down)
        prev = (math.exp(-t_anc) / math.exp(-t_now)) * x - math.expm1(t_now - t_anc) * x0
        prev = prev + rng.randn(len(x)).astype(np.float64) * up
        if first:
            self.saved, self.mid = x, s_to
        else:
            self.saved = self.mid = None
        return prev


class DDPM:
    """DDPMScheduler (variance_type fixed_small): the ancestral sampler of "Denoising Diffusion Probabilistic Models"."""
    name = "DDPMScheduler"
    defaults = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, variance_type="fixed_small", clip_sample=True, prediction_type="epsilon",
                    thresholding=False, clip_sample_range=1.0, timestep_spacing="leading", steps_offset=0,
                    rescale_betas_zero_snr=False)

    def __init__(self, config):
        self.c = with_defaults(self.defaults, config)
        self.ac = cumprod_f32((F32(1) - make_betas(self.c)).astype(F32))
        self.init_noise_sigma = 1.0

    def set_timesteps(self, n):
        self.n = n
        ts = spaced_timesteps(self.c, n)
        if self.c["timestep_spacing"] == "linspace":
            ts = ts.round()
        self.timesteps = ts.astype(np.int64)

    def set_begin_index(self, i):
        pass

    def scale_model_input(self, x, t):
        return x

    def step(self, out, t, x, rng):
        t = int(t)
        prev = t - self.c["num_train_timesteps"] // self.n
        a_t = float(self.ac[t])
        a_prev = float(self.ac[prev]) if prev >= 0 else 1.0
        b_t, b_prev = 1 - a_t, 1 - a_prev
        cur_a = a_t / a_prev
        cur_b = 1 - cur_a
        x, out = x.astype(np.float64), out.astype(np.float64)
        p = self.c["prediction_type"]
        if p == "epsilon":
            x0 = (x - b_t ** 0.5 * out) / a_t ** 0.5
        elif p == "sample":
            x0 = out
        else:
            x0 = a_t ** 0.5 * x - b_t ** 0.5 * out
        if self.c["clip_sample"]:
            r = self.c["clip_sample_range"]
            x0 = np.clip(x0, -r, r)
        prev_x = (a_prev ** 0.5 * cur_b / b_t) * x0 + (cur_a ** 0.5 * b_prev / b_t) * x
        if t > 0:
            variance = max(b_prev / b_t * cur_b, 1e-20)
            prev_x = prev_x + variance ** 0.5 * rng.randn(len(x)).astype(np.float64)
        return prev_x

    def add_noise(self, x0, noise, t):
        a = float(self.ac[int(t)])
        return a ** 0.5 * x0.astype(np.float64) + (1 - a) ** 0.5 * noise.astype(np.float64)


class FlowMatch(SigmaStepper):
    """FlowMatchEulerDiscreteScheduler (SD3): Euler steps on the rectified flow x = (1 - sigma) x0 + sigma noise."""
    name = "FlowMatchEulerDiscreteScheduler"
    defaults = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False, base_shift=0.5, max_shift=1.15,
                    base_image_seq_len=256, max_image_seq_len=4096, invert_sigmas=False, shift_terminal=None,
                    use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
                    time_shift_type="exponential", stochastic_sampling=False)

    def __init__(self, config):
        c = self.c = with_defaults(self.defaults, config)
        n = c["num_train_timesteps"]
        # float32 tensors in __init__: linspace(1, n, n)[::-1] / n, then the static shift
        sig = (np.linspace(1, n, n, dtype=F32)[::-1] / F32(n)).astype(F32)
        shift = c["shift"]
        if not c["use_dynamic_shifting"]:
            sig = (F32(shift) * sig / (F32(1) + F32(shift - 1) * sig)).astype(F32)
        self.sigma_min = float(sig[-1])
        self.sigma_max = float(sig[0])
        self.init_noise_sigma = 1.0
        self.step_index = self.begin = None

    def set_timesteps(self, n):
        c = self.c
        N = c["num_train_timesteps"]
        # numpy float64: linspace between the shifted ends (as timesteps), back to sigmas, shifted (again)
        sig = np.linspace(self.sigma_max * N, self.sigma_min * N, n) / N
        shift = c["shift"]
        sig = (shift * sig / (1 + (shift - 1) * sig)).astype(F32)
        self.timesteps = (sig * F32(N)).astype(F32)
        self.sigmas = np.concatenate([sig, np.zeros(1, dtype=F32)])
        self.step_index = self.begin = None

    def scale_model_input(self, x, t):
        return x

    def step(self, out, t, x, rng):
        self.init_step_index(t)
        i = self.step_index
        dt = F32(self.sigmas[i + 1] - self.sigmas[i])
        prev = (x.astype(F32) + dt * out.astype(F32)).astype(F32)
        self.step_index += 1
        return prev

    def add_noise(self, x0, noise, t):
        # diffusers' scale_noise
        sigma = F32(self.sigmas[self.noise_index(t)])
        return (sigma * noise.astype(F32) + (F32(1) - sigma) * x0.astype(F32)).astype(F32)


# ---------------------------------------------------------------------------------------------
# the cases

SD15 = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000,
            steps_offset=1, timestep_spacing="leading", prediction_type="epsilon", clip_sample=False,
            set_alpha_to_one=False, skip_prk_steps=True)
SD21V = dict(SD15, prediction_type="v_prediction")
TINY_BETAS = [round(0.001 + 0.0004 * i + 0.00002 * (i % 7), 6) for i in range(100)]

CASES = {
    DDIM: {
        "defaults": {},
        "sd15": SD15,
        "sd15-alpha-one": dict(SD15, set_alpha_to_one=True),
        "sd21v-leading": SD21V,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "zero-snr-trailing": dict(SD21V, timestep_spacing="trailing", rescale_betas_zero_snr=True),
        "sample-clipped": dict(SD15, prediction_type="sample", clip_sample=True, clip_sample_range=0.5),
        "cosine": dict(beta_schedule="squaredcos_cap_v2", clip_sample=False),
        "trained-betas": dict(trained_betas=TINY_BETAS, num_train_timesteps=100, clip_sample=False),
    },
    PNDM: {
        "defaults-prk": {},
        "sd15": SD15,
        "sd15-prk": dict(SD15, skip_prk_steps=False),
        "sd15-alpha-one": dict(SD15, set_alpha_to_one=True),
        "sd21v-leading": SD21V,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "cosine": dict(SD15, beta_schedule="squaredcos_cap_v2"),
    },
    Euler: {
        "defaults": {},
        "sd15": SD15,
        "sd15-karras": dict(SD15, use_karras_sigmas=True),
        "sd15-karras-range": dict(SD15, use_karras_sigmas=True, sigma_min=0.1, sigma_max=10.0),
        "sd21v-leading": SD21V,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "sd21v-karras": dict(SD21V, use_karras_sigmas=True),
        "zero-snr-trailing": dict(SD21V, timestep_spacing="trailing", rescale_betas_zero_snr=True),
        "log-linear": dict(SD15, interpolation_type="log_linear"),
        "continuous-v": dict(SD21V, timestep_type="continuous"),
        "sample-sigma-min": dict(SD15, prediction_type="sample", final_sigmas_type="sigma_min"),
        "trained-betas": dict(trained_betas=TINY_BETAS, num_train_timesteps=100),
    },
    EulerAncestral: {
        "defaults": {},
        "sd15": SD15,
        "sd21v-leading": SD21V,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "zero-snr-trailing": dict(SD21V, timestep_spacing="trailing", rescale_betas_zero_snr=True),
    },
    DPMSolver: {
        "defaults": {},
        "sd15": SD15,
        "sd15-karras": dict(SD15, use_karras_sigmas=True),
        "sd21v-leading": SD21V,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "sd21v-karras": dict(SD21V, use_karras_sigmas=True),
        "zero-snr-trailing": dict(SD21V, timestep_spacing="trailing", rescale_betas_zero_snr=True),
        "order3": dict(SD15, solver_order=3),
        "heun": dict(SD15, solver_type="heun"),
        "dpmsolver-sigma-min": dict(SD15, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
        "sample-lower-order-off": dict(SD15, prediction_type="sample", lower_order_final=False),
        "lambda-clipped": dict(SD15, lambda_min_clipped=-2.0),
        "cosine": dict(beta_schedule="squaredcos_cap_v2"),
    },
    Heun: {
        "defaults": {},
        "sd15": SD15,
        "sd21v-leading": SD21V,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "sample-clipped": dict(SD15, prediction_type="sample", clip_sample=True, clip_sample_range=0.5),
        "trained-betas": dict(trained_betas=TINY_BETAS, num_train_timesteps=100),
    },
    KDPM2: {
        "defaults": {},
        "sd15": SD15,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "trained-betas": dict(trained_betas=TINY_BETAS, num_train_timesteps=100),
    },
    DDPM: {
        "defaults": {},
        "sd15": SD15,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "sample-clipped": dict(SD15, prediction_type="sample", clip_sample=True, clip_sample_range=0.5),
        "trained-betas": dict(trained_betas=TINY_BETAS, num_train_timesteps=100, clip_sample=False),
    },
    LMS: {
        "defaults": {},
        "sd15": SD15,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "sample": dict(SD15, prediction_type="sample"),
        "trained-betas": dict(trained_betas=TINY_BETAS, num_train_timesteps=100),
    },
    KDPM2Ancestral: {
        "defaults": {},
        "sd15": SD15,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "trained-betas": dict(trained_betas=TINY_BETAS, num_train_timesteps=100),
    },
    DPMSinglestep: {
        "defaults": {},
        "sd15-2s-ancestral": dict(SD15, algorithm_type="sde-dpmsolver++", lower_order_final=True),
        "sd15": SD15,
        "sd21v-sde": dict(SD21V, algorithm_type="sde-dpmsolver++"),
        "heun": dict(SD15, solver_type="heun"),
        "sde-heun": dict(SD15, algorithm_type="sde-dpmsolver++", solver_type="heun"),
        "sample-sigma-min": dict(SD15, prediction_type="sample", final_sigmas_type="sigma_min"),
        "order1": dict(SD15, solver_order=1),
        "lambda-clipped": dict(SD15, lambda_min_clipped=-2.0),
    },
    DPMSDE: {
        "defaults": {},
        "sd15": SD15,
        "sd21v-trailing": dict(SD21V, timestep_spacing="trailing"),
        "sd21v-linspace": dict(SD21V, timestep_spacing="linspace"),
        "trained-betas": dict(trained_betas=TINY_BETAS, num_train_timesteps=100),
    },
    FlowMatch: {
        "defaults": {},
        "sd3-shift-3": dict(shift=3.0),
        "shift-1.5": dict(shift=1.5),
        "shift-6-trained-100": dict(shift=6.0, num_train_timesteps=100),
    },
    LCM: {
        "defaults": {},
        "sd15": SD15,
        "sd15-alpha-one-false": dict(SD15, set_alpha_to_one=False),
        "sd21v": SD21V,
        "zero-snr": dict(SD21V, rescale_betas_zero_snr=True),
        "original-steps-25": dict(SD15, original_inference_steps=25, timestep_scaling=5.0),
        "sample-clipped": dict(SD15, prediction_type="sample", clip_sample=True),
    },
}

STEP_COUNTS = {LCM: [4, 8, 25], FlowMatch: [28, 10, 4]}
DEFAULT_STEP_COUNTS = [25, 10, 7]
IMG2IMG = {"sd15": (25, 10), "sd21v-trailing": (10, 4), "sd21v": (8, 3), "sd3-shift-3": (28, 9),
           "sd15-2s-ancestral": (25, 9), "sd21v-sde": (10, 3)}


def num(v):
    """9 significant digits: far below the tests' 1e-4 tolerance, and half the file size of repr."""
    return float(f"{float(v):.9g}")


def summary(x):
    return {"sum": num(np.sum(x, dtype=np.float64)), "absSum": num(np.sum(np.abs(x), dtype=np.float64)),
            "head": [num(v) for v in x[:4]]}


def run(cls, case, config, steps, begin=None):
    s = cls(config)
    s.set_timesteps(steps)
    rng = CosRng()
    timesteps = list(s.timesteps)
    init = float(s.init_noise_sigma)
    i = np.arange(N_ELEMENTS)
    x = (np.sin(0.01 * i) * init).astype(F32)
    if begin is not None:
        s.set_begin_index(begin)
        original = np.cos(0.05 * i).astype(F32)
        x = s.add_noise(original, rng.randn(N_ELEMENTS), timesteps[begin]).astype(F32)
        timesteps = timesteps[begin:]
    trajectory = []
    for t in timesteps:
        t = float(t)
        model_in = np.asarray(s.scale_model_input(x, t)).astype(F32)
        out = (model_in.astype(np.float64) * (t / (t + 1))).astype(F32)
        x = np.asarray(s.step(out, t, x, rng)).astype(F32)
        trajectory.append(summary(x))
    result = {
        "class": cls.name, "case": case, "config": config, "steps": steps,
        "timesteps": [float(v) for v in s.timesteps],
        "initNoiseSigma": num(init),
        "trajectory": trajectory,
        "final": [num(v) for v in x],
    }
    if hasattr(s, "sigmas") and cls in (Euler, EulerAncestral, DPMSolver, FlowMatch, Heun, KDPM2, LMS, KDPM2Ancestral, DPMSinglestep, DPMSDE):
        result["sigmas"] = [num(v) for v in s.sigmas]
    if begin is not None:
        result["beginIndex"] = begin
    return result


def main():
    cases = []
    for cls, configs in CASES.items():
        for case, config in configs.items():
            for steps in STEP_COUNTS.get(cls, DEFAULT_STEP_COUNTS):
                cases.append(run(cls, case, config, steps))
            if case in IMG2IMG:
                steps, begin = IMG2IMG[case]
                cases.append(run(cls, case, config, steps, begin))
    fixture = {
        "generator": "scripts/reference/schedulers.py",
        "model": "out = scaleModelInput(x, t) * t / (t + 1); x0[i] = sin(0.01 i) * initNoiseSigma, 64 elements",
        "rng": "randn(n) returns cos(0.37 k) for a global counter k = 0, 1, 2, ... per case",
        "img2img": "with beginIndex: setBeginIndex(b); x = addNoise(cos(0.05 i), randn(64), timesteps[b])",
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
