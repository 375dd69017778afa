import { InvalidOptionsError } from './errors.js'

/**
 * The one checker of option objects, at the bottom of the layers so that
 * every layer refuses the same way (MemWAL.open, the operations' options, a
 * sink's constructor): a field not understood, or of the wrong type, is
 * INVALID_OPTIONS naming it (details.field), never ignored.
 */
export type FieldType = 'string' | 'number' | 'boolean' | 'string[]' | 'integer' | 'function' | 'object'

/** INVALID_OPTIONS naming the first own field of `o` that is not in `known` (details.field, after `prefix`), if any. */
export function refuseUnknown(what: string, o: object, known: readonly string[], prefix = ''): void {
  for (const field of Object.keys(o)) {
    if (!known.includes(field)) throw new InvalidOptionsError(`${what}: unknown option ${JSON.stringify(field)} (known: ${known.join(', ')})`, prefix + field)
  }
}

/**
 * `o` must be undefined or a plain object whose every own field is in
 * `spec`, with the type given there. Returns the object (or an empty one).
 */
export function checkFields<T extends object>(what: string, o: unknown, spec: Readonly<Record<string, FieldType>>, prefix = ''): Partial<T> {
  if (o === undefined) return {}
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new InvalidOptionsError(`${what} must be an object, not ${describe(o)}`, prefix || what)
  refuseUnknown(what, o, Object.keys(spec), prefix)
  for (const [field, v] of Object.entries(o)) {
    const type = spec[field] as FieldType
    if (v === undefined) continue
    if (!hasType(v, type)) throw new InvalidOptionsError(`${what}: ${field} must be ${TYPE_NAMES[type]}`, prefix + field)
  }
  return o as Partial<T>
}

const TYPE_NAMES: Readonly<Record<FieldType, string>> = {
  'string': 'a string', 'number': 'a number', 'boolean': 'a boolean', 'string[]': 'an array of strings',
  'integer': 'a safe integer', 'function': 'a function', 'object': 'an object',
}

function hasType(v: unknown, type: FieldType): boolean {
  switch (type) {
    case 'string[]':
      return Array.isArray(v) && v.every((x) => typeof x === 'string')
    case 'integer':
      return Number.isSafeInteger(v)
    case 'object':
      return typeof v === 'object' && v !== null && !Array.isArray(v)
    case 'string':
    case 'number':
    case 'boolean':
    case 'function':
      return typeof v === type
    default: {
      const never: never = type
      return never
    }
  }
}

function describe(o: unknown): string {
  return o === null ? 'null' : Array.isArray(o) ? 'an array' : typeof o
}
