// Accept-Encoding negotiation for pre-compressed siblings (RFC 9110
// §12.5.3). Pure: the header in, the codings worth trying out, best first.
//
// The rules, and where they follow @fastify/static (preCompressed) rather
// than a literal reading of the RFC:
//
// - Codings are case-insensitive; `q` is a qvalue from 0 to 1 with at most
//   three decimals (§12.4.2). A member whose q is malformed is ignored.
// - `q=0` means "not acceptable": that coding is never chosen.
// - An explicit entry wins over `*` for its coding; of repeated entries
//   for one coding, the first counts.
// - `*` stands for gzip only. @fastify/static (after @fastify/compress)
//   reads `*` as gzip, since clients that send a bare `*` predate brotli;
//   a client that wants br names it. So `*` alone gives gzip, and
//   `gzip;q=0, *` gives no coding at all (@fastify/static rewrites the
//   `*` into a second `gzip` there and sends gzip anyway).
// - Equal q-values are broken by the server's order (`supported`: br,
//   zstd, gzip, deflate), which the RFC leaves to the server. zstd comes
//   after br: browsers that send zstd (Chrome 123+, Firefox 126+) send br
//   with the same q, and a file compressed ahead of time at brotli's top
//   level is usually smaller than at zstd's (decoding speed matters less
//   for a one-off static asset); it comes before gzip, which it beats on
//   both. @fastify/static has no zstd; Caddy's `precompressed` serves it.
// - Identity is always the last resort, even when the client says
//   `identity;q=0` or `*;q=0`: like @fastify/static, and as §12.5.3 allows
//   ("the origin server SHOULD send a response without any content
//   coding" unless identity is excluded, and even then MAY), the file is
//   sent uncompressed rather than with 406.
// - No header, or an empty one, means no coding (identity).

/** The codings serve mode looks for, in the server's order of preference, with their file suffix. */
export const PRECOMPRESSED_CODINGS: ReadonlyArray<{ coding: string, suffix: string }> = [
  { coding: 'br', suffix: '.br' },
  { coding: 'zstd', suffix: '.zst' },
  { coding: 'gzip', suffix: '.gz' },
  { coding: 'deflate', suffix: '.deflate' }
]

const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/
const WILDCARD_CODINGS = new Set(['gzip'])

// RFC 9110 OWS is SP / HTAB.
function trimOws (value: string): string {
  let start = 0
  let end = value.length
  while (start < end && (value[start] === ' ' || value[start] === '\t')) start++
  while (end > start && (value[end - 1] === ' ' || value[end - 1] === '\t')) end--
  return value.slice(start, end)
}

/** Parses the header into coding → q (lower-cased codings, '*' included); malformed members are left out. */
export function parseAcceptEncoding (header: string): Map<string, number> {
  const weights = new Map<string, number>()
  // Bounded: a hostile header of thousands of members is not worth reading.
  const members = header.length > 4096 ? [] : header.split(',')
  for (const member of members) {
    const params = member.split(';')
    const coding = trimOws(params[0]).toLowerCase()
    if (coding === '' || weights.has(coding)) continue
    let q = 1
    let valid = true
    for (let i = 1; i < params.length; i++) {
      const param = trimOws(params[i])
      const eq = param.indexOf('=')
      const name = trimOws(eq === -1 ? param : param.slice(0, eq)).toLowerCase()
      if (name !== 'q') continue
      const value = eq === -1 ? '' : trimOws(param.slice(eq + 1))
      if (!QVALUE.test(value)) { valid = false; break }
      q = Number(value)
    }
    if (valid) weights.set(coding, q)
  }
  return weights
}

/**
 * The codings of `supported` the client accepts, best first (higher q,
 * then the order of `supported`). Empty: send the file as it is.
 */
export function acceptableCodings (header: string | undefined, supported: readonly string[]): string[] {
  if (typeof header !== 'string' || header === '') return []
  const weights = parseAcceptEncoding(header)
  const wildcard = weights.get('*')
  const ranked: Array<{ coding: string, q: number, order: number }> = []
  supported.forEach((coding, order) => {
    const q = weights.get(coding) ?? (WILDCARD_CODINGS.has(coding) ? wildcard : undefined) ?? 0
    if (q > 0) ranked.push({ coding, q, order })
  })
  ranked.sort((a, b) => b.q - a.q || a.order - b.order)
  return ranked.map((r) => r.coding)
}
