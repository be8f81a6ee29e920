export { createSshServer } from "./ssh-server.ts";
export { handleGitHttp } from "./http-git.ts";
export { startHookBridge } from "./hook-bridge.ts";
export { PushRegistry } from "./push-registry.ts";
export { ensureRepo, removeRepo, installHook } from "./repos.ts";
export { loadOrCreateHostKey, parsePublicKey, fingerprintOfBlob } from "./ssh-keys.ts";
export { runCommand, helpText } from "./commands.ts";
export { keepPushedCommit, resumeQueuedPushes } from "./queued-push.ts";
