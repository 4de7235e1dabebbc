import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'packages/*/dist/**', '.tap/**', 'coverage/**', 'node_modules/**']
  }),
  {
    // TypeBox idiom: a schema and its static type share one name (`User`, `type User`).
    files: ['schemas/**/*.ts'],
    rules: { '@typescript-eslint/no-redeclare': 'off' }
  }
]
