{
  "targets": [
    {
      "target_name": "zero_copy",
      "conditions": [
        ["OS=='linux'", {
          "sources": [
            "native/binding.c",
            "native/open.c",
            "native/open-walk.c",
            "native/sendfile.c",
            "native/transfer.c",
            "native/lease.c",
            "native/diag.c",
            "native/notify.c",
            "native/residency.c"
          ],
          "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2", "-pthread"],
          "ldflags": ["-pthread"]
        }, {
          "type": "none"
        }]
      ]
    }
  ]
}
