"""Moving messages: transports (RabbitMQ, in-process), topology, outbox relay, consumer, inbox."""
