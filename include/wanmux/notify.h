/*
 * Start-up and shutdown notifications to the service manager (systemd's
 * sd_notify protocol): READY=1 once listening, RELOADING=1 while a reload
 * runs, STOPPING=1 when shutting down. Without NOTIFY_SOCKET in the
 * environment, or in a build without libsystemd, every call is a no-op.
 */
#ifndef WANMUX_NOTIFY_H
#define WANMUX_NOTIFY_H

/* The daemon listens and serves: sends READY=1 (also after a reload). */
void notify_ready(void);

/* A reload has started: RELOADING=1 with MONOTONIC_USEC; end with notify_ready(). */
void notify_reloading(void);

/* Shutdown has started (listeners closed, open work finishing): STOPPING=1. */
void notify_stopping(void);

#endif
