/** The relay tests run in-thread: our relay's own shell (daemon/shell/relay_host.ts). */
export {
  type RoutingRelay,
  type RoutingRelayOptions,
  startRoutingRelay,
} from "../../daemon/shell/relay_host.ts";
