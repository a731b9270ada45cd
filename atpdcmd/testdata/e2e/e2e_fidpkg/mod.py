def handler(taskStatus, input):
    taskStatus.storeResponse("e2e_fidpkg.mod.handler", "text/plain")
