// dit-poc's programmatic API (`import … from 'dit-poc'`): open a model, run nonces, build and
// verify a commitment, validate a bundle, start the ML-node server. The CLI is built on these.
export { openModel, NonceRunner, type NonceResult } from './engine/nonce-runner.js';
export { addon, type ModelInfo, type NativeModel, type Precision, type BuildInfo } from './engine/native.js';
export { makeRound, modelInfo, gridForSeqLen, weightsIdentity, type RoundParams, type RoundOptions, type Grid } from './round/params.js';
export { assignedNonces, checkAssignment, type NodeAssignment } from './protocol/nonce-assignment.js';
export { decodeArtifact, artifactDistance } from './artifact/artifact.js';
export { SmstBuilder, verifyProof, hex, fromHex, type SmstProof, type VerifyResult } from './commitment/smst.js';
export { readBundle, type Bundle } from './bundle/reader.js';
export { bundleRound, type BundleRound, type BundleHeader } from './bundle/format.js';
export { generateBundle, type GenerateBundleOptions, type GenerateSummary } from './sprint/generate-bundle.js';
export { validateBundle, type BundleVerdict, type ValidateOptions } from './validation/validator.js';
export { decideVerdict, DEFAULT_STAT_TEST, type StatTest, type Verdict } from './validation/verdict.js';
export { statTestForModel, readCalibration } from './calibration/calibration-file.js';
export { startServer, type ServeConfig, type RunningServer } from './server/server.js';
export { parseDevices, type DeviceSpec } from './server/devices.js';
export { ServedNames, registryIdOf, huggingFaceIds } from './server/model-names.js';
export { packageVersion } from './package-info.js';
export { InputError } from './errors.js';
