// The errors the decoder raises: one-line messages, the same as the Python runtime's (l3ic.errors),
// so that the viewer, `python -m benchmarks.web_decode` and `l3ic decode` say the same about a bad file.

/** Base class: a user-facing failure with a one-line message. */
export class L3icError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}

/** The bytes are not a valid l3ic file (l3ic.errors.FormatError). */
export class FormatError extends L3icError {}

/** The model a file needs is missing, damaged or does not fit it (l3ic.errors.ModelError). */
export class ModelError extends L3icError {}

/**
 * One line for any failure: an L3icError's own message; a JavaScript engine's (a failed allocation,
 * a trap in WebAssembly) turned into what the Python tools print for the same trouble.
 */
export function errorLine(error) {
  if (error instanceof L3icError) return error.message;
  if (error instanceof RangeError && /alloc|memory|Invalid array length|Invalid typed array length/i.test(error.message)) {
    return 'out of memory';
  }
  const text = String(error && error.message !== undefined ? error.message : error).split('\n')[0];
  return `internal error: ${error && error.name ? error.name : 'Error'}: ${text}`;
}
