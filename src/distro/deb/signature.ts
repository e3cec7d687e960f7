import {
  createMessage,
  type Key,
  type KeyID,
  readCleartextMessage,
  readSignature,
  type Signature,
  type Subkey,
  verify,
} from 'openpgp';
import { describeError, RootcastError } from '../../core/errors.js';

/**
 * Verification of a Debian repository's Release file against a recipe's keyring, the
 * root of trust for everything fetched from that repository.
 *
 * Fails closed: the result is returned only if at least one signature verifies with a
 * key from the keyring that is neither expired nor revoked at `now`. Other signatures
 * (Debian signs each InRelease with several archive keys, not all of which a keyring
 * holds) are ignored. When no signature qualifies, the error says why, most serious
 * first: a signature that does not match the bytes (`RELEASE_SIGNATURE_INVALID`), a known
 * key that expired or was revoked (`RELEASE_KEY_EXPIRED`), or no key in the keyring at all
 * (`RELEASE_KEY_UNKNOWN`).
 *
 * openpgp checks a key's validity at the signature's creation time, not at `now`, so the
 * expiry and revocation checks at `now` are done here.
 */
/**
 * openpgp rejects signatures made after its `date`; a mirror that signed seconds ago and a
 * host clock a little behind must not look like tampering. Key expiry is still judged at `now`.
 */
const CLOCK_SKEW_MS = 10 * 60 * 1000;

export interface VerifiedRelease {
  /** The signed text exactly as signed (line endings normalised to `\n`). */
  text: string;
  /** Upper-case hex fingerprint of the primary key whose (sub)key made the accepted signature. */
  signer: string;
}

/** Verifies a cleartext-signed InRelease and returns the text inside the signature. */
export async function verifyInRelease(
  bytes: Uint8Array,
  keys: readonly Key[],
  now: Date,
): Promise<VerifiedRelease> {
  let message: Awaited<ReturnType<typeof readCleartextMessage>>;
  try {
    message = await readCleartextMessage({ cleartextMessage: new TextDecoder().decode(bytes) });
  } catch (error) {
    throw malformed('InRelease is not a cleartext-signed OpenPGP message', error);
  }
  const result = await runVerify(() => verify({ message, verificationKeys: [...keys], date: skewed(now) }));
  const signer = await acceptedSigner(result.signatures, keys, now);
  return { text: message.getText(), signer };
}

/** Verifies a Release file against its detached signature (`Release.gpg`, armored or binary). */
export async function verifyDetachedRelease(
  release: Uint8Array,
  signature: Uint8Array,
  keys: readonly Key[],
  now: Date,
): Promise<VerifiedRelease> {
  let parsed: Signature;
  try {
    const armored = new TextDecoder().decode(signature.subarray(0, 64)).includes('-----BEGIN PGP');
    parsed = armored
      ? await readSignature({ armoredSignature: new TextDecoder().decode(signature) })
      : await readSignature({ binarySignature: signature });
  } catch (error) {
    throw malformed('Release.gpg is not an OpenPGP signature', error);
  }
  const message = await createMessage({ binary: release });
  const result = await runVerify(() =>
    verify({ message, signature: parsed, verificationKeys: [...keys], date: skewed(now), format: 'binary' }),
  );
  const signer = await acceptedSigner(result.signatures, keys, now);
  return { text: new TextDecoder().decode(release), signer };
}

function skewed(now: Date): Date {
  return new Date(now.getTime() + CLOCK_SKEW_MS);
}

async function runVerify<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw new RootcastError({
      code: 'RELEASE_SIGNATURE_INVALID',
      message: `Release signature could not be checked: ${describeError(error)}`,
      hint: 'The repository metadata is damaged or tampered with; retry later or use another mirror.',
      cause: error,
    });
  }
}

type VerificationResult = Awaited<ReturnType<typeof verify>>['signatures'][number];

type Outcome =
  | { kind: 'ok'; signer: string }
  | { kind: 'invalid' | 'expired' | 'unknown'; keyID: string; reason: string };

async function acceptedSigner(
  signatures: readonly VerificationResult[],
  keys: readonly Key[],
  now: Date,
): Promise<string> {
  const outcomes = await Promise.all(signatures.map((s) => judge(s, keys, now)));
  for (const outcome of outcomes) if (outcome.kind === 'ok') return outcome.signer;
  const ids = (kind: Outcome['kind']) =>
    outcomes.flatMap((o) => (o.kind === kind && o.kind !== 'ok' ? [`${o.keyID} (${o.reason})`] : []));
  const invalid = ids('invalid');
  if (invalid.length > 0) {
    throw new RootcastError({
      code: 'RELEASE_SIGNATURE_INVALID',
      message: `Release signature does not verify: ${invalid.join('; ')}`,
      hint: 'The repository metadata was changed after signing (tampering or a broken mirror); use another mirror.',
      details: { keyIDs: invalid },
    });
  }
  const expired = ids('expired');
  if (expired.length > 0) {
    throw new RootcastError({
      code: 'RELEASE_KEY_EXPIRED',
      message: `Release is signed only by keys that are expired or revoked: ${expired.join('; ')}`,
      hint: 'Update the keyring (e.g. the distribution keyring package) or check that the system clock is right.',
      details: { keyIDs: expired },
    });
  }
  const unknown = ids('unknown');
  throw new RootcastError({
    code: 'RELEASE_KEY_UNKNOWN',
    message:
      unknown.length > 0
        ? `Release is signed by no key in the keyring (signed by ${unknown.map((u) => u.split(' ')[0]).join(', ')})`
        : 'Release carries no signature',
    hint: "Check that the recipe's keyring belongs to this repository, or install the repository's current keyring.",
    details: { keyIDs: unknown },
  });
}

async function judge(signature: VerificationResult, keys: readonly Key[], now: Date): Promise<Outcome> {
  const keyID = signature.keyID.toHex().toUpperCase();
  const owner = findKey(keys, signature.keyID);
  if (!owner) return { kind: 'unknown', keyID, reason: 'not in keyring' };
  try {
    await signature.verified;
  } catch (error) {
    return { kind: 'invalid', keyID, reason: describeError(error) };
  }
  const problem = await invalidAt(owner.key, owner.signingKey, now);
  if (problem) return { kind: 'expired', keyID, reason: problem };
  return { kind: 'ok', signer: owner.key.getFingerprint().toUpperCase() };
}

function findKey(keys: readonly Key[], keyID: KeyID): { key: Key; signingKey: Key | Subkey } | undefined {
  for (const key of keys) {
    const [signingKey] = key.getKeys(keyID);
    if (signingKey) return { key, signingKey };
  }
  return undefined;
}

/** Why `signingKey` (the primary key or one of its subkeys) cannot be trusted at `now`, if it cannot. */
async function invalidAt(key: Key, signingKey: Key | Subkey, now: Date): Promise<string | undefined> {
  if (await key.isRevoked(undefined, undefined, now)) return 'key revoked';
  const primaryExpiry = await key.getExpirationTime();
  if (primaryExpiry === null) return 'key has no valid self-signature';
  if (primaryExpiry instanceof Date && primaryExpiry.getTime() <= now.getTime()) {
    return `key expired ${primaryExpiry.toISOString()}`;
  }
  if (signingKey !== key) {
    // Subkey.verify checks the binding signature, its revocation and its expiry at `now`.
    try {
      await (signingKey as Subkey).verify(now);
    } catch (error) {
      return describeError(error);
    }
  }
  return undefined;
}

function malformed(message: string, cause: unknown): RootcastError {
  return new RootcastError({
    code: 'RELEASE_SIGNATURE_INVALID',
    message: `${message}: ${describeError(cause)}`,
    hint: 'The repository metadata is damaged or tampered with; retry later or use another mirror.',
    cause,
  });
}
