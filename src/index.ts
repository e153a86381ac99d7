// Public API of the order-fleet package: the subject contract and the publisher SDK.
export {
  OrderPublisher,
  type OrderEventInput,
  type OrderPublisherOptions,
  type PublishResult,
} from './publisher/order-publisher.js';
export { resourceNames, type ResourceNames } from './contract/names.js';
export { partitionOf, fnv1a32 } from './contract/partition.js';
export {
  assertCustomerId,
  customerIdViolation,
  MAX_CUSTOMER_ID_BYTES,
} from './contract/customer-id.js';
export {
  EVENT_TYPES,
  DEFAULT_EVENT_LIMITS,
  OrderEventSchema,
  type EventLimits,
  type EventType,
  type OrderEvent,
} from './contract/event.js';
export { eventSubject, parseOrdersSubject } from './contract/subjects.js';
export {
  ErrorCode,
  OrderFleetError,
  ValidationError,
  ConfigError,
  isOrderFleetError,
  isValidationError,
} from './errors.js';
export { loadConfig, type Config } from './config/config.js';
export { setupDeployment } from './nats/provision.js';
