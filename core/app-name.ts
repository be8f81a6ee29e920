/** App names double as directory names and host labels, so they are strict. */
export const APP_NAME_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;

export type NameCheck = { ok: true; name: string } | { ok: false; message: string };

export function checkAppName(raw: string): NameCheck {
  if (APP_NAME_PATTERN.test(raw)) return { ok: true, name: raw };
  const shown = raw.length > 40 ? `${raw.slice(0, 40)}…` : raw;
  return {
    ok: false,
    message: `invalid app name ${JSON.stringify(shown)}: use 1-63 lowercase letters, digits and dashes, starting with a letter`,
  };
}

/** Accepts the repository forms users type in a remote: `app`, `/app`, `app.git`, `/app.git`, `git/app.git`. */
export function appNameFromRepoPath(path: string): NameCheck {
  let p = path.trim();
  if (p.startsWith("'") && p.endsWith("'") && p.length >= 2) p = p.slice(1, -1);
  if (p.startsWith("/")) p = p.slice(1);
  if (p.endsWith(".git")) p = p.slice(0, -4);
  return checkAppName(p);
}
