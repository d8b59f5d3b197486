// Python's repr() of str and bytes, for error messages that must read exactly like the Python runtime's
// ("side-data tag b'\x01ABC' is not printable ASCII", "model name 'x\n' contains control characters").

const hex2 = (n) => n.toString(16).padStart(2, '0');

function escape(code, quote) {
  if (code === 0x5c) return '\\\\';
  if (code === quote) return '\\' + String.fromCharCode(quote);
  if (code === 0x09) return '\\t';
  if (code === 0x0a) return '\\n';
  if (code === 0x0d) return '\\r';
  return null;
}

/** The quote Python picks: ' unless the text holds ' and no ". */
function quoteFor(hasSingle, hasDouble) {
  return hasSingle && !hasDouble ? 0x22 : 0x27;
}

/** repr() of a JavaScript string as Python 3 writes it for a str. */
export function reprStr(text) {
  const quote = quoteFor(text.includes("'"), text.includes('"'));
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0);
    const special = escape(code, quote);
    if (special !== null) out += special;
    else if (code < 0x20 || code === 0x7f || (code >= 0x80 && code < 0xa0)) out += '\\x' + hex2(code);
    else out += ch;  // Python shows other printable characters as they are
  }
  return String.fromCharCode(quote) + out + String.fromCharCode(quote);
}

/** repr() of a byte array as Python 3 writes it for bytes. */
export function reprBytes(bytes) {
  const quote = quoteFor(bytes.includes(0x27), bytes.includes(0x22));
  let out = '';
  for (const code of bytes) {
    const special = escape(code, quote);
    if (special !== null) out += special;
    else if (code < 0x20 || code >= 0x7f) out += '\\x' + hex2(code);
    else out += String.fromCharCode(code);
  }
  return 'b' + String.fromCharCode(quote) + out + String.fromCharCode(quote);
}

/** '%04x' */
export const hex4 = (n) => n.toString(16).padStart(4, '0');
