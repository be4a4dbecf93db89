// grpc-js doing hostguard's real decision with nothing else around it: the Check handler is
// check() on the raw bytes (decode, decide, encode), with no metrics, log, deadline or health
// service, and the server options given as JSON (bench/transports.ts tries them one by one).
// node build/tools/bench/grpcjs-tuned-server.js PORT [OPTIONS_JSON]

import { type ChannelOptions, Server, ServerCredentials } from '@grpc/grpc-js'
import { check } from '../src/grpc-authz/check.js'
import { AUTHORIZATION_SERVICE } from '../src/server/authorization.js'
import { announce, examplePolicy } from './example-policy.js'

const policy = examplePolicy()
const options = JSON.parse(process.argv[3] ?? '{}') as ChannelOptions
// AUTHORIZATION_SERVICE has identity serializers: grpc-js hands over the message bytes as a Buffer.
const server = new Server(options)
server.addService(AUTHORIZATION_SERVICE, {
  Check: (call: { request: Buffer }, callback: (err: null, value: Buffer) => void) =>
    callback(null, check(policy, call.request).response),
})
server.bindAsync(
  `127.0.0.1:${process.argv[2] ?? '0'}`,
  ServerCredentials.createInsecure(),
  (err, port) => {
    if (err) throw err
    announce('grpcjs-tuned', port)
  },
)
