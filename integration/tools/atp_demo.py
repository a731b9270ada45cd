"""The ATP demo handler (EOxServer tools/atp_demo.py), registered as
"tools.atp_demo.handler": sums the numbers of the input sequence and stores
the sum as text/plain, or fails when an item is not a number."""


def handler(taskStatus, input):
    total = 0
    for item in input:
        try:
            total += float(item)
        except ValueError:
            # The daemon then leaves FAILED alone (stop-success-if-not-finished).
            taskStatus.setFailure("Input must be a sequence of numbers!")
            return
    taskStatus.storeResponse(str(total), "text/plain")
