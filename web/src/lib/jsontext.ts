// A JSON reader that remembers where in the text each value is, so an
// error about /items/2/sku can be shown on the line that holds it, and a
// syntax error names its line and column in every browser alike.

export interface TextPos {
  /** 1-based line. */
  line: number;
  /** 1-based column. */
  column: number;
}

export class JsonSyntaxError extends Error {
  readonly pos: TextPos;
  constructor(message: string, pos: TextPos) {
    super(`line ${pos.line}, column ${pos.column}: ${message}`);
    this.name = 'JsonSyntaxError';
    this.pos = pos;
  }
}

export interface ParsedJson {
  value: unknown;
  /** where each value starts, by JSON pointer ("" is the whole document); object members point at their key. */
  locations: Map<string, TextPos>;
}

/** escapePointer escapes one JSON pointer token. */
export function escapePointer(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** parseJsonText parses JSON, recording where each value is; it throws JsonSyntaxError. */
export function parseJsonText(text: string): ParsedJson {
  const locations = new Map<string, TextPos>();
  let i = 0;
  // Line starts, for turning offsets into positions.
  const lineStarts = [0];
  for (let k = 0; k < text.length; k++) if (text.charCodeAt(k) === 10) lineStarts.push(k + 1);
  const posAt = (off: number): TextPos => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid] <= off) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: off - lineStarts[lo] + 1 };
  };
  const fail = (msg: string, off = i): never => {
    throw new JsonSyntaxError(msg, posAt(Math.min(off, text.length)));
  };
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
  };
  const describe = () => (i >= text.length ? 'the end of the text' : JSON.stringify(text[i]));

  const str = (): string => {
    const start = i;
    i++; // opening quote
    for (;;) {
      if (i >= text.length) fail('a string is not closed', start);
      const c = text[i];
      if (c === '"') break;
      if (c === '\\') i += 2;
      else if (text.charCodeAt(i) < 0x20) fail('a control character inside a string must be escaped');
      else i++;
    }
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail('a string has a bad escape', start);
    }
  };

  const value = (ptr: string, at?: TextPos): unknown => {
    ws();
    if (!locations.has(ptr)) locations.set(ptr, at ?? posAt(i));
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail(`expected a property name in quotes, found ${describe()}`);
        const keyPos = posAt(i);
        const key = str();
        ws();
        if (text[i] !== ':') fail(`expected ':' after the property name "${key}", found ${describe()}`);
        i++;
        obj[key] = value(`${ptr}/${escapePointer(key)}`, keyPos);
        ws();
        if (text[i] === ',') {
          i++;
          ws();
          if (text[i] === '}') fail('a trailing comma is not allowed in JSON');
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail(`expected ',' or '}' after a property, found ${describe()}`);
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(`${ptr}/${arr.length}`));
        ws();
        if (text[i] === ',') {
          i++;
          ws();
          if (text[i] === ']') fail('a trailing comma is not allowed in JSON');
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail(`expected ',' or ']' in an array, found ${describe()}`);
      }
    }
    if (c === '"') return str();
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (m && m[0] !== '' && m[0] !== '-') {
      i += m[0].length;
      return Number(m[0]);
    }
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    return fail(`expected a value, found ${describe()}`);
  };

  const v = value('');
  ws();
  if (i < text.length) fail(`unexpected ${describe()} after the end of the JSON value`);
  return { value: v, locations };
}
