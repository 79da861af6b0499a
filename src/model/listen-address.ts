/**
 * A TCP listen address as an admin writes it in a config: "127.0.0.1:9464", "[::1]:9464",
 * "0.0.0.0:9464", or a bare port ("9464"), which means loopback: an HTTP endpoint that exposes
 * the fleet's state is reachable from the network only when the admin says so by name.
 */
import { isIP } from 'node:net'
import { HoldfastError } from '../util/errors.js'

export interface ListenAddress { host: string, port: number }

export function parseListenAddress (text: string): ListenAddress {
  const t = text.trim()
  const bare = /^\d+$/.exec(t)
  const m = bare !== null ? null : /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(t)
  const host = bare !== null ? '127.0.0.1' : m?.[1] ?? m?.[2]
  const port = Number(bare !== null ? t : m?.[3])
  if (host === undefined || isIP(host) === 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new HoldfastError('CONFIG_INVALID', `'${text}' is not a listen address: give <ip>:<port> (e.g. 127.0.0.1:9464, [::1]:9464) or a port`)
  }
  return { host, port }
}
