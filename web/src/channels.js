// The per-Gaussian channel layout the runtime, the kernel and the GPU program read (dejavu/gaussians/channels.py:
// 13 channels, xyz offset, log scales, quaternion vector part, opacity logit, colour DC); a pack says where each is.

export const C = 13;
const LAYOUT = { xyz: [0, 3], log_scale: [3, 6], rot: [6, 9], opacity: [9, 10], color: [10, 13] };

/** Why a pack's channels are not where this code reads them (avatar.json's "channels"); null when they are. */
export function channelLayoutProblem(meta) {
  for (const [name, [a, b]] of Object.entries(LAYOUT)) {
    const got = meta.channels[name];
    if (!got || got[0] !== a || got[1] !== b) return `avatar.json: channel ${name} is not at [${a}, ${b})`;
  }
  return null;
}
