import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface HttpReply {
  readonly status: number
  readonly contentType: string
  readonly body: string
}

/** GET routes by path: each answers from the engine's state at the moment of the request. */
export type HttpRoutes = Readonly<Record<string, () => Promise<HttpReply>>>

export interface HttpEndpoint {
  readonly host: string
  readonly port: number
  close(): Promise<void>
}

/**
 * A small HTTP server (node:http only) for a Prometheus scrape and a health
 * check: GET on a known path answers, anything else is 404 (405 for other
 * methods). Bound to `host` (memwal passes 127.0.0.1 unless told otherwise),
 * and never keeping the process alive on its own.
 */
export async function serveHttp(host: string, port: number, routes: HttpRoutes): Promise<HttpEndpoint> {
  const server = http.createServer((req, res) => {
    const route = routes[new URL(req.url ?? '/', 'http://localhost').pathname]
    const send = (r: HttpReply): void => {
      res.writeHead(r.status, { 'content-type': r.contentType, 'cache-control': 'no-store' })
      res.end(r.body)
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send({ status: 405, contentType: 'text/plain', body: 'GET only\n' })
    if (!route) return send({ status: 404, contentType: 'text/plain', body: `not found; try ${Object.keys(routes).join(', ')}\n` })
    route().then(send, (err: unknown) => send({ status: 500, contentType: 'text/plain', body: `${(err as Error)?.message ?? String(err)}\n` }))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.unref()
  const address = server.address() as AddressInfo
  return {
    host: address.address,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
