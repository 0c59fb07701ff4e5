{* hostwright: shown when the dashboard link could not be made *}
<div class="alert alert-warning">
    The hosting dashboard is not available right now: {$hostwrightError|escape:'html'}
</div>
