import { Client, credentials } from '@grpc/grpc-js'
import { CHECK_METHOD } from '../../src/server/authorization.js'

const identity = (bytes: Buffer): Buffer => bytes

/** A grpc-js client for a hostguard on loopback. */
export function checkClient(port: number): Client {
  return new Client(`127.0.0.1:${port}`, credentials.createInsecure())
}

/** One Check call with raw CheckRequest bytes; resolves with the raw CheckResponse bytes. */
export function callCheck(client: Client, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(CHECK_METHOD, identity, identity, request, (err, res) =>
      err || !res ? reject(err) : resolve(res),
    ),
  )
}
