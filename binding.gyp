{
  "targets": [
    {
      "target_name": "zero_copy",
      "conditions": [
        ["OS=='linux'", {
          "sources": [
            "native/binding.c",
            "native/open.c",
            "native/sendfile.c",
            "native/transfer.c"
          ],
          "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"]
        }, {
          "type": "none"
        }]
      ]
    }
  ]
}
