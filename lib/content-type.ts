import mime from 'mime'

const FALLBACK_TYPE = 'application/octet-stream'

// Textual types outside text/* whose bodies we serve as UTF-8.
const UTF8_APPLICATION_TYPES = new Set([
  'application/javascript',
  'application/json',
  'application/xml',
  'image/svg+xml'
])

function isUtf8Type (type: string): boolean {
  return type.startsWith('text/') ||
    UTF8_APPLICATION_TYPES.has(type) ||
    type.endsWith('+json') ||
    type.endsWith('+xml')
}

// The extension is taken here rather than by mime.getType(filePath), which
// treats a bare name without a dot as an extension (a file named "json"
// would become application/json). Like path.extname, a leading dot starts a
// hidden name, not an extension (".json" has none).
function extensionOf (filePath: string): string {
  const baseName = filePath.slice(filePath.lastIndexOf('/') + 1)
  const dot = baseName.lastIndexOf('.')
  return dot > 0 ? baseName.slice(dot + 1).toLowerCase() : ''
}

// One entry per extension seen (bounded: names come from requests).
const byExtension = new Map<string, string>()

export function contentTypeFor (filePath: string): string {
  const extension = extensionOf(filePath)
  let contentType = byExtension.get(extension)
  if (contentType === undefined) {
    const type = extension === '' ? null : mime.getType(extension)
    contentType = type === null ? FALLBACK_TYPE : isUtf8Type(type) ? `${type}; charset=utf-8` : type
    if (byExtension.size >= 1024) byExtension.clear()
    byExtension.set(extension, contentType)
  }
  return contentType
}
