/** What every screen of the dashboard is given by the root. */
import type { ApiClient, DeckEvent } from "./api-client.ts";

export interface ScreenProps {
  client: ApiClient;
  width: number;
  /** Rows the screen's body may use. */
  height: number;
  color: boolean;
  /** The `/` filter text ("" for none). */
  filter: string;
  /** Whether the screen's own keys act now (not while the command line or filter is being typed, nor under help). */
  keysLive: () => boolean;
  /** Events heard on the API's event stream, oldest first (the most recent few). */
  events: readonly DeckEvent[];
  /** Opens an app's detail screen. */
  openApp: (name: string) => void;
}
