// Tests read many JSON bodies of known shape; `any` here spares a cast at every call.
export {};
declare global {
  interface Response {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    json(): Promise<any>;
  }
}
