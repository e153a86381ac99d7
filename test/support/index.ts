export * from './nats-server.js';
export * from './nats-cluster.js';
export * from './nats.js';
