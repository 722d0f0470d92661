/**
 * The hub's note, on a Node, of the endpoints it last published for the node's peer:
 * `ADDRESS:PORT SOURCE`, comma-separated, best first (as flannel notes a node's public IP), for
 * `flotilla describe node`.
 */
export const ENDPOINTS_ANNOTATION = 'network.flotilla.io/endpoints';
