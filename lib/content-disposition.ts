// Content-Disposition for a download (RFC 6266), with an ASCII fallback
// name and the exact name in RFC 8187 encoding for clients that read it.
const unsafeInQuotedName = /[^\x20-\x7e]|["\\%]/g

function rfc8187 (value: string): string {
  return encodeURIComponent(value).replace(/['()*]/g, c => '%' + c.charCodeAt(0).toString(16).toUpperCase())
}

export function attachmentHeader (filename: string): string {
  // Only the last path segment names the download; a client must never be
  // told to save into a folder.
  const name = filename.split(/[/\\]/).pop() || 'download'
  const fallback = name.replace(unsafeInQuotedName, '_')
  if (fallback === name) return `attachment; filename="${name}"`
  return `attachment; filename="${fallback}"; filename*=UTF-8''${rfc8187(name)}`
}
