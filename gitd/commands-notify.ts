import { DeckError } from "../core/index.ts";
import { addNotifyChannel, listNotifyChannelsOf, removeNotifyChannel, testNotifyChannels, type NotifyChannelView } from "../ops/notify.ts";
import { defineCommands, pad, positionals } from "./command-kit.ts";

/** SSH commands for notification channels: where an organisation's alert notices go. */

const shortTime = (iso: string) => iso.slice(0, 19).replace("T", " ");

/** The positionals a command takes, refusing a missing or an extra one with its usage. */
function lastDelivery(c: NotifyChannelView): string {
  const last = c.lastDelivery;
  if (!last) return "never sent";
  return last.ok ? `delivered ${shortTime(last.at)}` : `failed ${shortTime(last.at)}: ${last.error ?? ""}`;
}

const ADD = "notify:add ORG webhook|slack URL | notify:add ORG email ADDRESS";

defineCommands({
  "notify:add": {
    usage: "notify:add ORG webhook|slack|email TARGET",
    help: "send the org's alert notices to a webhook (Alertmanager's JSON), a Slack-compatible incoming webhook URL, or an e-mail address",
    run: async (deps, caller, args, io) => {
      const [org, kind, target] = positionals(args, ["ORG", "KIND (webhook, slack or email)", "TARGET (a URL, or an e-mail address)"], ADD);
      const channel = await addNotifyChannel(deps, caller, org!, kind!, target!);
      io.out(`added ${channel.kind} channel ${channel.id} to ${org}: ${channel.target}`);
      io.out(`send it a test notice with: notify:test ${org}`);
    },
  },
  "notify:list": {
    usage: "notify:list ORG [--json]", help: "the org's notification channels (secrets masked), their last delivery and the notices waiting or given up", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const [org] = positionals(args, ["ORG"], "notify:list ORG [--json]");
      const channels = await listNotifyChannelsOf(deps, caller, org!);
      if (args.json) return io.out(JSON.stringify(channels));
      if (channels.length === 0) return io.out(`${org} has no notification channels yet; add one with notify:add ${org} webhook|slack URL or notify:add ${org} email ADDRESS`);
      const rows = channels.map((c) => [String(c.id), c.kind, c.target, String(c.pending), String(c.dead), lastDelivery(c)]);
      for (const l of pad([["ID", "KIND", "TARGET", "PENDING", "DEAD", "LAST DELIVERY"], ...rows])) io.out(l);
    },
  },
  "notify:remove": {
    usage: "notify:remove ORG ID", help: "stop sending the org's notices to a channel (its queued notices go with it)",
    run: async (deps, caller, args, io) => {
      const [org, id] = positionals(args, ["ORG", "ID"], "notify:remove ORG ID");
      await removeNotifyChannel(deps, caller, org!, id!);
      io.out(`removed notification channel ${id} from ${org}`);
    },
  },
  "notify:test": {
    usage: "notify:test ORG", help: "send a test notice to every channel of the org and say which got it (exit status 1 unless all did)",
    run: async (deps, caller, args, io) => {
      const [org] = positionals(args, ["ORG"], "notify:test ORG");
      const results = await testNotifyChannels(deps, caller, org!);
      for (const l of pad(results.map((r) => [String(r.id), r.kind, r.target, r.message]))) io.out(l);
      return results.every((r) => r.delivered) ? 0 : 1;
    },
  },
});
