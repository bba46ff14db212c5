/*
 * Kubernetes clients for stages, see common.h. Kept apart from common.c so the pure
 * helpers there link without the REST client.
 */
#include "stages/common.h"
#include "clients/kube.h"
#include "clients/kubeconfig.h"
#include "engine/pipeline.h"

#include <errno.h>
#include <string.h>

int co_stages_kube_from_path(struct co_stage_run *run, const char *path,
			     struct co_kube **ret, struct co_error *err)
{
	struct co_kubeconfig *cfg = NULL;
	const struct co_pipeline_services *svc =
		co_pipeline_services(co_stage_pipeline(run));
	int rc;

	if (!svc || !svc->http)
		return co_error_set(err, -EINVAL,
				    "no http client for the kubernetes client");
	rc = co_kubeconfig_load(&cfg, path, NULL, err);
	if (rc < 0)
		return rc;
	rc = co_kube_new(ret, co_stage_loop(run), svc->http, cfg, err);
	co_kubeconfig_free(cfg);
	return rc;
}

int co_stages_kube_from_text(struct co_stage_run *run, const char *yaml,
			     struct co_kube **ret, struct co_error *err)
{
	struct co_kubeconfig *cfg = NULL;
	const struct co_pipeline_services *svc =
		co_pipeline_services(co_stage_pipeline(run));
	int rc;

	if (!svc || !svc->http)
		return co_error_set(err, -EINVAL,
				    "no http client for the kubernetes client");
	rc = co_kubeconfig_parse(&cfg, yaml, strlen(yaml), "provider kubeconfig", NULL,
				 NULL, err);
	if (rc < 0)
		return rc;
	rc = co_kube_new(ret, co_stage_loop(run), svc->http, cfg, err);
	co_kubeconfig_free(cfg);
	return rc;
}
