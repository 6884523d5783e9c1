/*
 * sd_notify wrappers for Type=notify units. The messages are best effort: a
 * daemon run by hand, or built without libsystemd (no WM_HAVE_SYSTEMD), sends
 * nothing and behaves the same.
 */
#include "wanmux/notify.h"

#ifdef WM_HAVE_SYSTEMD
#include <stdio.h>
#include <time.h>

#include <systemd/sd-daemon.h>

void notify_ready(void)
{
	/* unset_environment 0: a reload sends READY=1 again to the same socket. */
	sd_notify(0, "READY=1");
}

void notify_reloading(void)
{
	struct timespec ts;
	char msg[64];

	/* systemd >= 253 (Type=notify-reload) matches the reload by this time. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull +
		     (unsigned long long)ts.tv_nsec / 1000);
	sd_notify(0, msg);
}

void notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

#else

void notify_ready(void)
{
}

void notify_reloading(void)
{
}

void notify_stopping(void)
{
}

#endif
