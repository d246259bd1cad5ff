"""pushpool SDK: flows, deployments, runs, automations, the HTTP client, the in-container runner and the CLI.

    from sdk import flow, deploy, run_deployment, DockerImage, Cron, Interval, RRule
    from sdk import Automation, DeploymentTrigger, EventTrigger
"""

from sdk.automations import Automation, DeploymentTrigger, EventTrigger
from sdk.deployments import deploy
from sdk.flows import Flow, flow
from sdk.images import DockerImage
from sdk.runs import run_deployment
from sdk.schedules import Cron, Interval, RRule

__all__ = ["Automation", "Cron", "DeploymentTrigger", "DockerImage", "EventTrigger", "Flow", "Interval", "RRule",
           "deploy", "flow", "run_deployment"]
