/*
 * daemon/io/route.c — the loop's routing of requests to sinks by opcode (daemon/io/sink.h).
 *
 * Why a table: ECHO and NOP are the transport's own diagnostics and GENERATE is the model's; with
 * the choice made here the engine does not embed the echo sink to answer them, and a new opcode
 * (or a new sink) is one vd_route_set call where the loop is wired.
 */
#include <errno.h>
#include <stdio.h>

#include "daemon/io/sink.h"

void vd_route_set(struct vd_route *rt, unsigned op, struct vd_sink *sink)
{
	if (op >= VS_OP__COUNT)
		return;
	rt->by_op[op] = sink;
	rt->n_sinks = 0;
	for (unsigned i = 0; i < VS_OP__COUNT; i++) {
		unsigned k;

		if (!rt->by_op[i])
			continue;
		for (k = 0; k < rt->n_sinks && rt->sinks[k] != rt->by_op[i]; k++)
			;
		if (k == rt->n_sinks)
			rt->sinks[rt->n_sinks++] = rt->by_op[i];
	}
}

int vd_route_submit(const struct vd_route *rt, struct vd_request *req, char *err, size_t errlen)
{
	struct vd_sink *s = req->sqe.opcode < VS_OP__COUNT ? rt->by_op[req->sqe.opcode] : NULL;

	if (!s) {
		snprintf(err, errlen, "opcode %u not served here", req->sqe.opcode);
		vd_request_free(req);
		return -EOPNOTSUPP;
	}
	return s->ops->submit(s, req, err, errlen);
}

int vd_route_cancel(const struct vd_route *rt, uint32_t slot, uint32_t gen, uint64_t user_data)
{
	for (unsigned i = 0; i < rt->n_sinks; i++)
		if (rt->sinks[i]->ops->cancel(rt->sinks[i], slot, gen, user_data) == 0)
			return 0;
	return -ENOENT;
}

void vd_route_client_gone(const struct vd_route *rt, uint32_t slot, uint32_t gen)
{
	for (unsigned i = 0; i < rt->n_sinks; i++)
		rt->sinks[i]->ops->client_gone(rt->sinks[i], slot, gen);
}

int vd_route_idle(const struct vd_route *rt)
{
	for (unsigned i = 0; i < rt->n_sinks; i++)
		if (rt->sinks[i]->ops->idle && !rt->sinks[i]->ops->idle(rt->sinks[i]))
			return 0;
	return 1;
}
