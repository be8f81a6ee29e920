/** Every screen of the dashboard: the root shows them by name and opens them with their `:` commands. */
import React from "react";
import type { ScreenDef } from "../screen.ts";
import { AppDetailScreen } from "./app-detail.ts";
import { AppsScreen } from "./apps.ts";
import { OverviewScreen } from "./overview.ts";

export const SCREENS: ScreenDef[] = [
  { name: "overview", aliases: ["o", "home"], title: () => "overview", component: OverviewScreen },
  {
    name: "apps", aliases: ["a"], title: () => "apps", component: AppsScreen, keys: "Enter open  s sort",
    help: ["s                            sort the apps table (name, requests/s, p95, memory, last deploy)"],
  },
  { name: "app", title: (arg) => `app ${arg ?? ""}`, component: (p) => React.createElement(AppDetailScreen, { ...p, app: p.arg ?? "" }) },
];
