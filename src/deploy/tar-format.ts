/**
 * The ustar header layout and the pax records both the tar writer and reader use. Only what a
 * package needs: regular files, directories, symbolic links, and pax `path`/`linkpath`/`size`
 * for names longer than the 100 bytes a ustar header holds.
 */
export const BLOCK = 512

/** ustar typeflags. */
export const TYPE = {
  file: '0',
  oldFile: '\0',
  hardlink: '1',
  symlink: '2',
  charDevice: '3',
  blockDevice: '4',
  directory: '5',
  fifo: '6',
  contiguous: '7',
  paxHeader: 'x',
  paxGlobal: 'g'
} as const

/** Offsets and lengths of the ustar header fields. */
export const FIELD = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  prefix: [345, 155]
} as const

/** The header's checksum: the sum of its bytes with the checksum field read as spaces. */
export function headerChecksum (header: Uint8Array): number {
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += (i >= 148 && i < 156) ? 0x20 : header[i] as number
  return sum
}

/** One pax record: "<len> <key>=<value>\n", where len counts the whole record, itself included. */
export function paxRecord (key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`
  const bodyLen = Buffer.byteLength(body)
  let len = bodyLen + 1
  while (String(len).length + bodyLen !== len) len++
  return Buffer.from(`${len}${body}`, 'utf8')
}
