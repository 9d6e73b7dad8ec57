"""Ray actors of the pipeline: one consumer per Kafka partition and what it uses."""
