'use strict';

// Loads the repository's own .proto files at run time, so this executor can
// never drift from the contract the Go coordinator was generated from, and
// there is no code generation step to forget.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

/** The repository's proto/ directory, two levels above this package. */
const DEFAULT_PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');

// keepCase keeps the proto's snake_case field names, so code and docs use
// one spelling; longs as strings because Timestamp/Duration seconds are
// int64; defaults so absent scalars read as '' / 0 / empty Buffer; oneofs so
// a message says which member it carries (req.kind === 'execute_step').
const LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

/**
 * loadProtos returns the gRPC service definitions of tasker.executor.v1 and
 * tasker.coordinator.v1. Well-known types (Timestamp, Duration, Struct) come
 * bundled with protobufjs, so only protoDir is read from disk.
 */
function loadProtos(protoDir = DEFAULT_PROTO_DIR) {
  const definition = protoLoader.loadSync(
    ['tasker/executor/v1/executor.proto', 'tasker/coordinator/v1/coordinator.proto'],
    { ...LOADER_OPTIONS, includeDirs: [protoDir] },
  );
  const pkg = grpc.loadPackageDefinition(definition);
  return {
    /** Service definition to pass to grpc.Server#addService. */
    executorService: pkg.tasker.executor.v1.ExecutorService.service,
    /** Client constructor for executor tests and tools. */
    ExecutorClient: pkg.tasker.executor.v1.ExecutorService,
    /** Client constructor for the coordinator (RegisterExecutor, ReportStepResult). */
    CoordinatorClient: pkg.tasker.coordinator.v1.CoordinatorService,
    /** Service definition of the coordinator, for test doubles. */
    coordinatorService: pkg.tasker.coordinator.v1.CoordinatorService.service,
  };
}

module.exports = { loadProtos, DEFAULT_PROTO_DIR };
