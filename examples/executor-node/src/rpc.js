'use strict';

// Promise wrapper for unary calls to the coordinator. It hands back the call
// too, so a loop that is being stopped can cancel a request in flight
// instead of waiting out its timeout.

const grpc = require('@grpc/grpc-js');

/**
 * unary calls client[method](request) with a deadline of timeoutMs and
 * returns {call, response}: response is a promise of the reply, rejected
 * with the gRPC error (err.code is a grpc.status value).
 */
function unary(client, method, request, timeoutMs) {
  let call;
  const response = new Promise((resolve, reject) => {
    call = client[method](request, { deadline: Date.now() + timeoutMs }, (err, reply) => {
      if (err) reject(err);
      else resolve(reply);
    });
  });
  return { call, response };
}

// Status codes that say the coordinator understood the request and refuses
// it: sending the same result again the same way cannot succeed.
const DEFINITIVE = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.PERMISSION_DENIED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED,
  grpc.status.UNAUTHENTICATED,
]);

/** definitiveRejection reports whether retrying err's call cannot help. */
function definitiveRejection(err) {
  return DEFINITIVE.has(err?.code);
}

module.exports = { unary, definitiveRejection };
