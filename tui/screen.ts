/** What every screen of the dashboard is given by the root, and how a screen is registered. */
import type React from "react";
import type { ApiClient, DeckEvent, Me } from "./api-client.ts";

export interface ScreenProps {
  /** deck's API; while a platform admin views as another user, a client that reads as them. */
  client: ApiClient;
  width: number;
  /** Rows the screen's body may use. */
  height: number;
  color: boolean;
  /** The `/` filter text ("" for none). */
  filter: string;
  /** Whether the screen's own keys act now (not while the command line, filter or a question is being typed, nor under help). */
  keysLive: () => boolean;
  /** Events heard on the API's event stream, oldest first (the most recent few). */
  events: readonly DeckEvent[];
  /** Opens an app's detail screen. */
  openApp: (name: string) => void;
  /** Opens a screen on top of this one (Esc comes back): a registered screen's name and its argument. */
  open: (screen: string, arg?: string) => void;
  /**
   * No key may change anything: `deck tui --readonly`, or while viewing as another user. A screen
   * shows no action key then, as it shows none the caller's role may not use.
   */
  readonly: boolean;
  /** Who is signed in (undefined until `GET /users/me` answered). */
  me: Me | undefined;
  /**
   * Asks a question on the footer line; the typed answer goes to `onAnswer` on Enter; Esc cancels
   * (and says so). Used for destructive actions: `confirm` below is the usual form.
   */
  ask: (prompt: string, onAnswer: (text: string) => void) => void;
  /**
   * Asks the user to type `expect` (an app's name, a user's email, or "y") to go on with `run`;
   * anything else runs nothing and says so.
   */
  confirm: (prompt: string, expect: string, run: () => void) => void;
  /** One line on the footer (an action's outcome); `error` colours it red. */
  notify: (text: string, tone?: "ok" | "error") => void;
  /** Starts or stops looking as another user (platform admins; reads only). */
  setViewAs: (email: string | undefined) => void;
}

/** What decides which keys a screen offers: read-only or not, who is signed in, whom they view as, the screen's argument. */
export interface KeyContext { readonly: boolean; me: Me | undefined; viewAs: string | undefined; arg: string | undefined }

/** One screen the root can show: the `:` commands that open it, its keys for the footer and help. */
export interface ScreenDef {
  /** The screen's name (also its first command), e.g. "deploys". */
  name: string;
  /** More `:` commands that open it, e.g. ["d", "builds"]. A screen that needs an argument (an app) has none. */
  aliases?: string[];
  /** Title in the header, from the argument. */
  title?: (arg: string | undefined) => string;
  component: React.ComponentType<ScreenProps & { arg?: string }>;
  /** Lines of `?` help for this screen (keys it adds), each "KEY   what it does": like the footer, only the keys the caller may use. */
  help?: string[] | ((props: KeyContext) => string[]);
  /** The footer's key hint for this screen, e.g. "Enter follow  c cancel". */
  keys?: string | ((props: KeyContext) => string);
}

/** The usual way a screen runs an action: says it started, then how it ended, on the footer. */
export async function runAction(props: Pick<ScreenProps, "notify">, doing: string, action: () => Promise<string | void>): Promise<boolean> {
  props.notify(`${doing}…`);
  try {
    const done = await action();
    props.notify(done || `${doing}: done`, "ok");
    return true;
  } catch (err) {
    props.notify(`${doing}: ${err instanceof Error ? err.message : String(err)}`, "error");
    return false;
  }
}
