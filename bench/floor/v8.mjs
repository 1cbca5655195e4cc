// Runs the body-floor driver built for wasm32-wasip1 in node (V8, the
// engine Envoy runs the filter in): node bench/floor/v8.mjs <floor.wasm>
// <dir of bodies> [iterations] [ops]; prints µs per iteration per op and body.
// ops: comma-separated (default the body ops); `request-a,request-c,...`
// runs whole requests of those bench scenarios through the request machine
// (on the 1 KiB body only).
import { readFileSync } from "node:fs";
import { WASI } from "node:wasi";

const [wasmPath, dir, iters = "300", opList = ""] = process.argv.slice(2);
const module = await WebAssembly.compile(readFileSync(wasmPath));
const ops = opList ? opList.split(",") : ["sha256", "verify", "mask", "both", "copy", "floor"];
const requests = ops.every((op) => op.startsWith("request-"));
for (const body of requests ? ["body1k.json"] : ["body64k.json", "body1k.json"]) {
  const n = body === "body1k.json" ? String(Number(iters) * 20) : iters;
  const row = [];
  for (const op of ops) {
    let out = "";
    const wasi = new WASI({
      version: "preview1",
      args: ["floor", op, `/data/${body}`, n],
      preopens: { "/data": dir },
      returnOnExit: true,
    });
    // Capture stdout (the µs figure) by wrapping fd_write.
    const imports = wasi.getImportObject();
    const preview1 = { ...imports.wasi_snapshot_preview1 };
    let instance;
    const fdWrite = preview1.fd_write;
    preview1.fd_write = (fd, iovs, len, nwritten) => {
      if (fd !== 1) return fdWrite(fd, iovs, len, nwritten);
      const mem = new DataView(instance.exports.memory.buffer);
      let total = 0;
      for (let k = 0; k < len; k++) {
        const ptr = mem.getUint32(iovs + 8 * k, true);
        const l = mem.getUint32(iovs + 8 * k + 4, true);
        out += Buffer.from(instance.exports.memory.buffer, ptr, l).toString();
        total += l;
      }
      mem.setUint32(nwritten, total, true);
      return 0;
    };
    instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: preview1 });
    wasi.start(instance);
    row.push(`${op} ${out.trim()}`);
  }
  console.log(`${body}: ${row.join("  ")} µs`);
}
