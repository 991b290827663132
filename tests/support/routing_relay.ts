/** The relay tests run in-thread: our relay's own shell (daemon/relay_host.ts). */
export {
  type RoutingRelay,
  type RoutingRelayOptions,
  startRoutingRelay,
} from "../../daemon/relay_host.ts";
