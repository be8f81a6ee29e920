/** Every screen of the dashboard: the root shows them by name and opens them with their `:` commands. */
import type { ScreenDef } from "../screen.ts";
import { ALERTS_SCREEN } from "./alerts.ts";
import { APP_DETAIL_SCREEN } from "./app-detail.ts";
import { AUDIT_SCREEN } from "./audit.ts";
import { BUILD_SCREEN, DEPLOYS_SCREEN } from "./deploys.ts";
import { SECURITY_SCREEN } from "./security.ts";
import { BILLING_SCREEN } from "./billing.ts";
import { ORG_SCREEN, ORGS_SCREEN } from "./orgs.ts";
import { SUPPORT_SCREEN } from "./support.ts";
import { USERS_SCREEN } from "./users.ts";
import { AppsScreen } from "./apps.ts";
import { OverviewScreen } from "./overview.ts";

export const SCREENS: ScreenDef[] = [
  { name: "overview", aliases: ["o", "home"], title: () => "overview", component: OverviewScreen },
  {
    name: "apps", aliases: ["a"], title: () => "apps", component: AppsScreen, keys: "Enter open  s sort",
    help: ["s                            sort the apps table (name, requests/s, p95, memory, last deploy)"],
  },
  APP_DETAIL_SCREEN,
  DEPLOYS_SCREEN, BUILD_SCREEN, ALERTS_SCREEN, SECURITY_SCREEN, AUDIT_SCREEN,
  USERS_SCREEN, ORGS_SCREEN, ORG_SCREEN, BILLING_SCREEN, SUPPORT_SCREEN,
];
