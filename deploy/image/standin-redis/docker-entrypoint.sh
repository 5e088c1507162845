#!/bin/sh
# As the official redis image's entrypoint: `redis-server` given flags but no config file
# runs with --protected-mode no (otherwise Redis refuses every client not on loopback).
set -e
if [ "${1:-}" = "redis-server" ]; then
    case "${2:-}" in
        *.conf) ;;
        *) case " $* " in
               *" --protected-mode "*) ;;
               *) set -- "$@" --protected-mode no ;;
           esac ;;
    esac
fi
exec "$@"
