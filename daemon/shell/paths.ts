/**
 * Where the daemon keeps things by default, the one rule the daemon and `ctl` share (ctl
 * must find the socket the daemon made). Imports nothing, so `ctl` stays light.
 *
 * Data: `$XDG_DATA_HOME/toxtcp`, else `~/.local/share/toxtcp`. Control socket:
 * `$TOXTCP_SOCKET`, else `$XDG_RUNTIME_DIR/toxtcp/control.sock` (a private directory of its
 * own, so its mode can be 0700), else `<data dir>/control.sock`.
 */

export type Env = (name: string) => string | undefined;

/** A setting the user must fix; the message says what. */
export class ConfigError extends Error {}

/** An XDG base directory; empty or relative counts as unset, as the XDG spec asks. */
function xdgDir(env: Env, name: string): string | undefined {
  const v = env(name);
  return v && v.startsWith("/") ? v.replace(/\/+$/, "") : undefined;
}

export function defaultDataDir(env: Env): string {
  const data = xdgDir(env, "XDG_DATA_HOME");
  if (data !== undefined) return `${data}/toxtcp`;
  const home = env("HOME")?.replace(/\/+$/, "");
  if (!home) throw new ConfigError("neither XDG_DATA_HOME nor HOME is set: give --data-dir");
  return `${home}/.local/share/toxtcp`;
}

/** `dataDir`: the daemon's (it may be --data-dir); ctl, which cannot know, uses the default. */
export function defaultSocketPath(env: Env, dataDir?: string): string {
  const explicit = env("TOXTCP_SOCKET");
  if (explicit) return explicit;
  const runtime = xdgDir(env, "XDG_RUNTIME_DIR");
  if (runtime !== undefined) return `${runtime}/toxtcp/control.sock`;
  if (dataDir === undefined) {
    try {
      dataDir = defaultDataDir(env);
    } catch {
      throw new ConfigError(
        "cannot choose the control socket path: none of TOXTCP_SOCKET, XDG_RUNTIME_DIR, " +
          "XDG_DATA_HOME, HOME is set",
      );
    }
  }
  return `${dataDir}/control.sock`;
}
