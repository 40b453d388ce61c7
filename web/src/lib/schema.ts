// Checking a task context against its template's context_schema in the
// browser, before it is sent, with errors placed at the field they are
// about. The coordinator checks again (draft 2020-12, formats asserted):
// this only saves a round trip and shows where the problem is.

import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import Ajv2019 from 'ajv/dist/2019';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { escapePointer, JsonSyntaxError, parseJsonText, type TextPos } from './jsontext';

/** FieldError is one problem with the context, at a JSON pointer ("" is the whole context). */
export interface FieldError {
  path: string;
  message: string;
  pos?: TextPos;
}

export interface ContextValidator {
  /** validate returns the problems with a context; none means it meets the schema. */
  validate(value: unknown): FieldError[];
}

/**
 * newValidator compiles a context schema. Draft 2020-12 is the default, as
 * on the coordinator; a schema whose $schema names draft-07 or 2019-09 is
 * compiled as that draft. It throws when the schema cannot be compiled.
 */
export function newValidator(schema: Record<string, unknown> | null | undefined): ContextValidator {
  if (!schema || Object.keys(schema).length === 0) {
    return { validate: (v) => (isObject(v) ? [] : [{ path: '', message: 'must be a JSON object' }]) };
  }
  const draft = typeof schema.$schema === 'string' ? schema.$schema : '';
  const opts = { allErrors: true, strict: false, validateFormats: true };
  const ajv = draft.includes('draft-07') || draft.includes('draft-06')
    ? new Ajv(opts)
    : draft.includes('2019-09')
      ? new Ajv2019(opts)
      : new Ajv2020(opts);
  addFormats(ajv);
  const fn: ValidateFunction = ajv.compile(schema);
  return {
    validate(v) {
      const out: FieldError[] = [];
      if (!isObject(v)) out.push({ path: '', message: 'must be a JSON object' });
      if (!fn(v)) out.push(...fieldErrors(fn.errors ?? []));
      return dedupe(out);
    },
  };
}

function isObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * fieldErrors maps ajv's errors to the field each is about: a missing
 * property is reported at the property (not at its parent object, where
 * ajv puts it), and so is one that is not allowed. Combinator errors
 * ("must match a schema in anyOf") that only repeat their branches' are
 * kept, since they are the only ones that say the branches were options.
 */
export function fieldErrors(errors: ErrorObject[]): FieldError[] {
  return errors
    .filter((e) => e.keyword !== 'if')
    .map((e) => {
      const p = e.params as Record<string, unknown>;
      switch (e.keyword) {
        case 'required':
        case 'dependentRequired':
          return { path: `${e.instancePath}/${escapePointer(String(p.missingProperty))}`, message: 'is required' };
        case 'additionalProperties':
        case 'unevaluatedProperties': {
          const prop = String(p.additionalProperty ?? p.unevaluatedProperty);
          return { path: `${e.instancePath}/${escapePointer(prop)}`, message: 'is not allowed here (not in the schema)' };
        }
        default:
          return { path: e.instancePath, message: e.message ?? e.keyword };
      }
    });
}

function dedupe(errs: FieldError[]): FieldError[] {
  const seen = new Set<string>();
  const out: FieldError[] = [];
  for (const e of errs) {
    const k = e.path + '\u0000' + e.message;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(e);
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** ContextCheck is what checking a context's text found. */
export type ContextCheck =
  | { ok: true; value: Record<string, unknown> }
  | { ok: false; syntax?: JsonSyntaxError; errors: FieldError[] };

/**
 * checkContextText parses the text of a context and checks it, placing
 * each error at the line of the field it names (or, for a missing field,
 * of the object that lacks it).
 */
export function checkContextText(text: string, validator: ContextValidator): ContextCheck {
  let parsed;
  try {
    parsed = parseJsonText(text.trim() === '' ? '{}' : text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) return { ok: false, syntax: e, errors: [] };
    throw e;
  }
  const errors = validator.validate(parsed.value).map((e) => ({ ...e, pos: locate(parsed.locations, e.path) }));
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, value: parsed.value as Record<string, unknown> };
}

/** locate finds the nearest located ancestor of a pointer. */
function locate(locations: Map<string, TextPos>, path: string): TextPos | undefined {
  for (let p = path; ; p = p.slice(0, p.lastIndexOf('/'))) {
    const pos = locations.get(p);
    if (pos) return pos;
    if (p === '') return undefined;
  }
}

/** fieldLabel writes a pointer as people read it: "order_id", "items[2].sku", "(the context)". */
export function fieldLabel(path: string): string {
  if (path === '') return '(the context)';
  return path
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, t) => (/^\d+$/.test(t) ? `${acc}[${t}]` : acc === '' ? t : `${acc}.${t}`), '');
}

/**
 * exampleContext is a starting point for a context that a schema wants:
 * its required properties (and any with a default) filled with their
 * default, first example or an empty value of their type.
 */
export function exampleContext(schema: Record<string, unknown> | null | undefined): Record<string, unknown> {
  const v = exampleOf(schema, 0);
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function exampleOf(schema: unknown, depth: number): unknown {
  if (!schema || typeof schema !== 'object' || depth > 6) return null;
  const s = schema as Record<string, unknown>;
  if ('default' in s) return s.default;
  if (Array.isArray(s.examples) && s.examples.length > 0) return s.examples[0];
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  switch (type) {
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, unknown>;
      const required = new Set(Array.isArray(s.required) ? (s.required as string[]) : []);
      const out: Record<string, unknown> = {};
      for (const [k, p] of Object.entries(props)) {
        const hasDefault = !!p && typeof p === 'object' && 'default' in (p as object);
        if (required.has(k) || hasDefault) out[k] = exampleOf(p, depth + 1);
      }
      for (const k of required) if (!(k in out)) out[k] = null;
      return out;
    }
    case 'array':
      return [];
    case 'string':
      return '';
    case 'integer':
    case 'number':
      return typeof s.minimum === 'number' ? s.minimum : 0;
    case 'boolean':
      return false;
    default:
      return s.properties ? exampleOf({ ...s, type: 'object' }, depth) : null;
  }
}
