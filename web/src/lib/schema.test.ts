import { describe, expect, it } from 'vitest';
import { JsonSyntaxError, parseJsonText } from './jsontext';
import { checkContextText, exampleContext, fieldLabel, newValidator } from './schema';

describe('parseJsonText', () => {
  it('parses like JSON.parse and records where each value is', () => {
    const text = '{\n  "order_id": "x",\n  "items": [\n    {"sku": 1},\n    {"sku": "b/c~"}\n  ]\n}';
    const { value, locations } = parseJsonText(text);
    expect(value).toEqual(JSON.parse(text));
    expect(locations.get('')).toEqual({ line: 1, column: 1 });
    expect(locations.get('/order_id')).toEqual({ line: 2, column: 3 });
    expect(locations.get('/items/1')).toEqual({ line: 5, column: 5 });
    expect(locations.get('/items/1/sku')).toEqual({ line: 5, column: 6 });
  });

  it('escapes pointer tokens', () => {
    const { locations } = parseJsonText('{"a/b": {"~": 1}}');
    expect(locations.has('/a~1b/~0')).toBe(true);
  });

  it('reads every kind of value', () => {
    const text = '[true, false, null, -1.5e3, 0, "\\u00e9\\n", {}, []]';
    expect(parseJsonText(text).value).toEqual(JSON.parse(text));
  });

  it('names the line and column of a syntax error', () => {
    const cases: [string, string][] = [
      ['{\n  "a": 1,\n}', 'line 3, column 1: a trailing comma is not allowed in JSON'],
      ['{\n  "a" 1\n}', `line 2, column 7: expected ':' after the property name "a", found "1"`],
      ['{"a": tru}', 'line 1, column 7: expected a value, found "t"'],
      ['{"a": "x', 'line 1, column 7: a string is not closed'],
      ['{} x', 'line 1, column 4: unexpected "x" after the end of the JSON value'],
      ['', 'line 1, column 1: expected a value, found the end of the text'],
      ["{'a': 1}", `line 1, column 2: expected a property name in quotes, found "'"`],
    ];
    for (const [text, msg] of cases) {
      expect(() => parseJsonText(text), text).toThrow(msg);
      try {
        parseJsonText(text);
      } catch (e) {
        expect(e).toBeInstanceOf(JsonSyntaxError);
      }
    }
  });
});

const orderSchema = {
  type: 'object',
  required: ['order_id'],
  properties: {
    order_id: { type: 'string', minLength: 1 },
    email: { type: 'string', format: 'email' },
    items: { type: 'array', items: { type: 'object', required: ['sku'], properties: { sku: { type: 'string' } } } },
  },
  additionalProperties: false,
};

describe('newValidator', () => {
  it('accepts a context that meets the schema', () => {
    expect(newValidator(orderSchema).validate({ order_id: 'a', items: [{ sku: 'x' }] })).toEqual([]);
  });

  it('reports each problem at its field', () => {
    const errs = newValidator(orderSchema).validate({ email: 'not-an-email', items: [{ sku: 1 }, {}], extra: 1 });
    expect(errs).toEqual([
      { path: '/email', message: 'must match format "email"' },
      { path: '/extra', message: 'is not allowed here (not in the schema)' },
      { path: '/items/0/sku', message: 'must be string' },
      { path: '/items/1/sku', message: 'is required' },
      { path: '/order_id', message: 'is required' },
    ]);
  });

  it('wants an object even without a schema', () => {
    expect(newValidator(null).validate([])).toEqual([{ path: '', message: 'must be a JSON object' }]);
    expect(newValidator({}).validate({ anything: 1 })).toEqual([]);
  });

  it('speaks draft 2020-12 by default and draft-07 when the schema says so', () => {
    const s2020 = { type: 'object', properties: { t: { type: 'array', prefixItems: [{ type: 'number' }] } } };
    expect(newValidator(s2020).validate({ t: ['x'] })).toEqual([{ path: '/t/0', message: 'must be number' }]);
    const s07 = { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { n: { type: 'integer' } } };
    expect(newValidator(s07).validate({ n: 1.5 })).toEqual([{ path: '/n', message: 'must be integer' }]);
  });

  it('throws on a schema it cannot compile', () => {
    expect(() => newValidator({ type: 'no-such-type' })).toThrow();
  });
});

describe('checkContextText', () => {
  const v = newValidator(orderSchema);
  it('returns the context when it is fine', () => {
    expect(checkContextText('{"order_id": "o-1"}', v)).toEqual({ ok: true, value: { order_id: 'o-1' } });
  });
  it('places schema errors on the line of the field, or of the object missing it', () => {
    const res = checkContextText('{\n  "items": [\n    {"sku": 7}\n  ]\n}', v);
    expect(res.ok).toBe(false);
    if (res.ok) return;
    expect(res.errors).toEqual([
      { path: '/items/0/sku', message: 'must be string', pos: { line: 3, column: 6 } },
      { path: '/order_id', message: 'is required', pos: { line: 1, column: 1 } },
    ]);
  });
  it('reports a syntax error with its place', () => {
    const res = checkContextText('{\n "order_id": }', v);
    expect(res.ok).toBe(false);
    if (res.ok) return;
    expect(res.syntax?.pos).toEqual({ line: 2, column: 14 });
  });
  it('takes empty text as an empty context', () => {
    expect(checkContextText('  ', newValidator(null))).toEqual({ ok: true, value: {} });
  });
});

describe('fieldLabel', () => {
  it('reads pointers as people do', () => {
    expect(fieldLabel('')).toBe('(the context)');
    expect(fieldLabel('/order_id')).toBe('order_id');
    expect(fieldLabel('/items/2/sku')).toBe('items[2].sku');
    expect(fieldLabel('/a~1b/c~0d')).toBe('a/b.c~d');
  });
});

describe('exampleContext', () => {
  it('fills what the schema requires', () => {
    expect(exampleContext(orderSchema)).toEqual({ order_id: '' });
    expect(
      exampleContext({
        type: 'object',
        required: ['n', 'tags', 'nested', 'mode', 'untyped'],
        properties: {
          n: { type: 'integer', minimum: 1 },
          tags: { type: 'array' },
          nested: { type: 'object', required: ['ok'], properties: { ok: { type: 'boolean' } } },
          mode: { enum: ['fast', 'slow'] },
          region: { type: 'string', default: 'eu' },
          optional: { type: 'string' },
        },
      }),
    ).toEqual({ n: 1, tags: [], nested: { ok: false }, mode: 'fast', region: 'eu', untyped: null });
    expect(exampleContext(null)).toEqual({});
    expect(exampleContext({ type: 'string' })).toEqual({});
  });
});
