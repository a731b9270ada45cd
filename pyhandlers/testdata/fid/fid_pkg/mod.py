def handler(taskStatus, input):
    taskStatus.storeResponse("fid_pkg.mod.handler", "text/plain")
