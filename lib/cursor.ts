// Opaque pagination cursors: base64url of a JSON array of strings, each checked against
// the pattern its position must match. Anything else is a 400, never a SQL error.
import createError from '@fastify/error'

export const BadCursor = createError('AUTH_BAD_CURSOR', 'Malformed cursor', 400)

export function encodeCursor (parts: string[]): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url')
}

export function decodeCursor (cursor: string, patterns: RegExp[]): string[] {
  let parts: unknown
  try {
    parts = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
  } catch {
    throw new BadCursor()
  }
  if (!Array.isArray(parts) || parts.length !== patterns.length ||
      !parts.every((p, i) => typeof p === 'string' && patterns[i].test(p))) {
    throw new BadCursor()
  }
  return parts as string[]
}
