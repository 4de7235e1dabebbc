// Which new passwords are refused, and why: those attackers try first (OWASP ASVS 2.1.7,
// NIST SP 800-63B §5.1.1.2) and those that contain the username. No composition rules
// (the contract): length is checked by the schemas, 8 to 128 characters.
import { dictionary } from '@zxcvbn-ts/language-common'

let common: Set<string> | undefined

/**
 * zxcvbn-ts's list of common passwords (about 49,000, from breach corpora, lower case),
 * shipped in the package: no network at run time. Only those of 8 characters or more can
 * be chosen here at all. Built once per process, on first use.
 */
function commonPasswords (): Set<string> {
  common ??= new Set(dictionary['passwords-common'].filter((p) => p.length >= 8))
  return common
}

/** Why `password` may not be chosen by `username`, or null when it may. */
export function passwordProblem (password: string, username: string): string | null {
  const lower = password.toLowerCase()
  if (commonPasswords().has(lower)) {
    return 'This password is on a list of common passwords that attackers try first: choose another'
  }
  if (lower.includes(username.toLowerCase())) {
    return 'The password must not contain the username'
  }
  return null
}

/** Builds the list now (start-up), so that the first registration does not wait for it. */
export function loadPasswordPolicy (): void {
  commonPasswords()
}
