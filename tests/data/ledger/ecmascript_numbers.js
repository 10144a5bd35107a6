// Writes ecmascript_numbers.txt: "<IEEE 754 bits as 16 hex digits> <JSON.stringify(value)>"
// per line, the reference for Imprint's canonical number formatting (RFC 8785 uses
// ECMAScript's Number.prototype.toString). Deterministic: a fixed xorshift64 seed.
//   node tests/data/ledger/ecmascript_numbers.js > tests/data/ledger/ecmascript_numbers.txt
const view = new DataView(new ArrayBuffer(8));
const lines = [];
function emit(value) {
  if (!Number.isFinite(value)) return;
  view.setFloat64(0, value);
  lines.push(view.getBigUint64(0).toString(16).padStart(16, "0") + " " + JSON.stringify(value));
}
const special = [0, -0, 1, -1, 0.1, 0.2, 0.3, 1 / 3, 100, 1e21, 1e20, 123e18, 1e-6, 1e-7, 1.5e-7,
  5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 9007199254740992, 9007199254740993,
  4.35, 0.000001234, 123456789012345680000, 1e22, 999999999999999900000, 0.1 + 0.2, 812.5, 2 ** 53 + 2];
special.forEach(emit);
let state = 0x9e3779b97f4a7c15n;
const mask = (1n << 64n) - 1n;
function next() {
  state ^= (state << 13n) & mask;
  state ^= state >> 7n;
  state ^= (state << 17n) & mask;
  return state;
}
for (let i = 0; i < 3000; i++) {
  view.setBigUint64(0, next());
  emit(view.getFloat64(0));
}
for (let i = 0; i < 2000; i++) {
  // Values with few digits over a wide exponent range: where notation changes.
  const digits = Number(next() % 100000n);
  const exponent = Number(next() % 60n) - 30;
  emit(Number(`${digits}e${exponent}`));
  emit(-Number(`${digits % 1000}.${digits}e${exponent}`));
}
process.stdout.write(lines.join("\n") + "\n");
