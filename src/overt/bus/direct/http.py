"""The direct transport's HTTP surface, named once for both ends."""

COMMANDS_PATH = "/v1/commands"
ENROLLMENT_REQUEST_PATH = "/v1/enrollment/request"
ENROLLMENT_CERTIFICATE_PATH = "/v1/enrollment/certificate"
EVENTS_PATH = "/v1/events"
ENROLL_PATH = "/v1/enroll"
CA_PATH = "/v1/ca"

# The host UUID the engine means to reach: a node refuses a command meant for another.
HOST_UUID_HEADER = "Overt-Host-Uuid"
