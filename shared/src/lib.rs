//! What the coordinator and the workers both speak: step and outcome messages, queue and
//! exchange names, the Redis key schema and scripts, configuration and metric names.
