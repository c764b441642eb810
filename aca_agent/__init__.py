"""The Alcor Control Agent of the message-queue path: consume goal states, apply, reply."""
