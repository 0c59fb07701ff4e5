{* hostwright: the customer's hosting dashboard opens in a tab of its own (its pages cannot be framed). *}
<div class="hostwright-client-area text-center" style="margin: 20px 0;">
    <p>Your hosting is managed by our control panel: follow a new site being built, and see your usage, mail and SSL there.</p>
    <a class="btn btn-primary btn-lg" href="{$hostwrightClientLink|escape:'html'}" target="_blank" rel="noopener">
        Open the hosting dashboard
    </a>
</div>
