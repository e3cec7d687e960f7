{
  "targets": [
    {
      "target_name": "rootcast_native",
      "sources": ["rootcast_native.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-llzma"]
    }
  ]
}
